"""Notify against the real RabbitMQ, a real MongoDB-wire server, a real HTTP server standing in
for WeChat Work and a real SMTP server."""

from __future__ import annotations

import copy
import email
import email.policy
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import httpx
import pytest
from aiosmtpd.controller import Controller
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.domain import open_case
from services.notify.app import build_app
from services.notify.settings import NotifySettings
from shared.contracts import (
    AssignedHelper,
    CaseAssigned,
    CaseEscalated,
    Contact,
    Event,
    HardshipReport,
    HelperKind,
    HelperRecord,
    utcnow,
)
from shared.embedded import free_port
from shared.registry import upsert_helpers
from shared.storage import CASES, Document
from shared.topology import EVENTS
from tests.support import (
    DEV_CIPHER,
    PERSON_SECRET,
    EventListener,
    Recorded,
    RecordingServer,
    running,
    service_env,
    wait_for,
)

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
VOLUNTEER = HelperRecord(
    id="vol-1",
    kind=HelperKind.volunteer,
    name="李红",
    lat=30.58,
    lon=114.27,
    contact=Contact(phone="13900001111"),
)
AGENCY = HelperRecord(
    id="mzj",
    kind=HelperKind.agency,
    name="江汉区民政局",
    divisions=["420103"],
    needs=["benefits"],
    contact=Contact(email="mzj@example.gov.cn"),
)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def wechat_answer(request: Recorded) -> tuple[int, dict[str, Any]]:
    if "key=broken" in request.query:
        return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
    return 200, {"errcode": 0, "errmsg": "ok"}


@pytest.fixture
async def wechat() -> AsyncIterator[RecordingServer]:
    async with RecordingServer(wechat_answer) as server:
        yield server


async def start_notify(
    amqp_url: str,
    mongo_url: str,
    db_name: str,
    wechat: RecordingServer,
    smtp_port: int,
    team_key: str = "team",
) -> NotifySettings:
    env = service_env(amqp_url, mongo_url, db_name) | {
        "WECHAT_WORK_WEBHOOK_URL": f"{wechat.url}/cgi-bin/webhook/send?key={team_key}",
        "DUTY_DESK_WEBHOOK_URL": f"{wechat.url}/cgi-bin/webhook/send?key=duty",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
    }
    return NotifySettings(**env)  # type: ignore[arg-type]


async def new_case(db: AsyncDatabase[Document]) -> str:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = uuid.uuid4().hex
    document, _ = open_case(
        HardshipReport.model_validate(body), uuid.uuid4().hex, utcnow(), DEV_CIPHER, PERSON_SECRET
    )
    await db[CASES].insert_one(document)
    return str(document["_id"])


async def publish(amqp: aio_pika.abc.AbstractRobustConnection, event: Event) -> None:
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    await exchange.publish(
        aio_pika.Message(event.model_dump_json().encode()), routing_key=event.routing_key
    )
    await channel.close()


def assigned(case_id: str, helper: HelperRecord) -> CaseAssigned:
    return CaseAssigned(
        case_id=case_id,
        helper=AssignedHelper(
            helper_id=helper.id, kind=helper.kind, name=helper.name, distance_km=1.5
        ),
        need="medicine",
        urgency="immediate",
        division_code="420103",
        received_at=utcnow(),
    )


@pytest.fixture
async def notify(
    db: AsyncDatabase[Document],
    amqp_url: str,
    mongo_url: str,
    db_name: str,
    wechat: RecordingServer,
    mailbox: tuple[Mailbox, int],
    listener: EventListener,
) -> AsyncIterator[httpx.AsyncClient]:
    await listener.bind("outreach.*")
    await upsert_helpers(db, [VOLUNTEER, AGENCY], utcnow(), PERSON_SECRET)
    settings = await start_notify(amqp_url, mongo_url, db_name, wechat, mailbox[1])
    async with running(build_app(settings)) as client:
        yield client


async def test_volunteer_is_told_through_wechat_work_with_a_mention_and_it_is_recorded(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    wechat: RecordingServer,
    listener: EventListener,
) -> None:
    case_id = await new_case(db)
    await publish(amqp, assigned(case_id, VOLUNTEER))
    [sent] = await listener.wait("outreach.sent", case_id)
    assert sent["channel"] == "wechat_work" and sent["purpose"] == "assignment"
    [request] = wechat.requests
    assert request.query == "key=team"
    body = request.json()
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == ["13900001111"]
    assert "买药" in body["text"]["content"] and "江汉区" in body["text"]["content"]
    assert EXAMPLE["location"]["address"] not in body["text"]["content"]
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None
    [attempt] = case["outreach"]
    assert attempt["status"] == "sent" and attempt["channel"] == "wechat_work"
    assert "key=team" not in attempt["recipient"]


async def test_redelivered_event_sends_nothing_new(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    wechat: RecordingServer,
    listener: EventListener,
) -> None:
    case_id = await new_case(db)
    event = assigned(case_id, VOLUNTEER)
    await publish(amqp, event)
    await listener.wait("outreach.sent", case_id)
    await publish(amqp, event)
    sentinel = await new_case(db)  # processed after the redelivery on the same queue
    await publish(amqp, assigned(sentinel, VOLUNTEER))
    await listener.wait("outreach.sent", sentinel)
    assert [r.json()["text"]["content"].count(case_id) for r in wechat.requests] == [1, 0]
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None and len(case["outreach"]) == 1


async def test_agency_gets_a_work_order_by_email(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    mailbox: tuple[Mailbox, int],
    listener: EventListener,
) -> None:
    case_id = await new_case(db)
    await publish(amqp, assigned(case_id, AGENCY))
    [sent] = await listener.wait("outreach.sent", case_id)
    assert sent["channel"] == "email" and sent["purpose"] == "work_order"
    [message] = mailbox[0].messages
    assert message["To"] == "mzj@example.gov.cn"
    assert "工单转办" in str(message["Subject"])


async def test_escalation_reaches_the_duty_desk_with_its_reason(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    wechat: RecordingServer,
    listener: EventListener,
) -> None:
    case_id = await new_case(db)
    await publish(
        amqp,
        CaseEscalated(
            case_id=case_id,
            helper=AssignedHelper(
                helper_id="desk", kind=HelperKind.duty_desk, name="武汉市残联值班室"
            ),
            reason="no_eligible_helper",
            need="food",
            urgency="within_24h",
            division_code="420103",
            received_at=utcnow(),
        ),
    )
    await listener.wait("outreach.sent", case_id)
    [request] = wechat.requests
    assert request.query == "key=duty"
    assert "附近没有符合条件的志愿者或机构" in request.json()["text"]["content"]


async def test_failed_channel_falls_back_to_the_next_and_both_attempts_are_recorded(
    db: AsyncDatabase[Document],
    amqp_url: str,
    mongo_url: str,
    db_name: str,
    amqp: aio_pika.abc.AbstractRobustConnection,
    wechat: RecordingServer,
    mailbox: tuple[Mailbox, int],
    listener: EventListener,
) -> None:
    await listener.bind("outreach.*")
    await upsert_helpers(
        db,
        [
            VOLUNTEER.model_copy(
                update={"contact": Contact(phone="13900001111", email="li.hong@example.org")}
            )
        ],
        utcnow(),
        PERSON_SECRET,
    )
    settings = await start_notify(
        amqp_url, mongo_url, db_name, wechat, mailbox[1], team_key="broken"
    )
    async with running(build_app(settings)):
        case_id = await new_case(db)
        await publish(amqp, assigned(case_id, VOLUNTEER))
        [sent] = await listener.wait("outreach.sent", case_id)

    assert sent["channel"] == "email"
    case = await wait_for(lambda: db[CASES].find_one({"_id": case_id}))
    assert [(a["channel"], a["status"]) for a in case["outreach"]] == [
        ("wechat_work", "failed"),
        ("email", "sent"),
    ]
    assert case["outreach"][1]["recipient"] == "l***@example.org"
