"""Notify against the real RabbitMQ, a real MongoDB-wire server, a real SMTP server (aiosmtpd)
and real HTTP servers standing in for WeChat Work, the SMS gateway, the call centre and the
hotline's callback endpoint. Each test asserts what those servers actually received."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import io
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aiosmtpd.controller import Controller
from pymongo import monitoring
from pymongo.asynchronous.database import AsyncDatabase
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.intake.domain import open_case
from services.notify.app import build_app
from services.notify.settings import NotifySettings
from shared import cli
from shared.contracts import (
    AssignedHelper,
    CaseAccepted,
    CaseAssigned,
    CaseEscalated,
    CaseResolved,
    Contact,
    Event,
    HardshipReport,
    HardshipReported,
    HelperKind,
    HelperRecord,
    OutreachDeadLetter,
    Resolution,
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
    Mailbox,
    Recorded,
    RecordingServer,
    running,
    self_signed_certificate,
    service_env,
    wait_for,
)

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
SOURCE = EXAMPLE["source"]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PERSON_PHONE, CARER_PHONE, HELPER_PHONE = "13800138000", "13700137000", "13900001111"
VOLUNTEER = HelperRecord(
    id="vol-1",
    kind=HelperKind.volunteer,
    name="李红",
    lat=30.58,
    lon=114.27,
    contact=Contact(phone=HELPER_PHONE),
)
AGENCY = HelperRecord(
    id="mzj",
    kind=HelperKind.agency,
    name="江汉区民政局",
    divisions=["420103"],
    needs=["benefits"],
    contact=Contact(email="mzj@example.gov.cn"),
)
Answer = Callable[[Recorded], tuple[int, dict[str, Any]]]


# ------------------------------------------------------------------ the outside world


class Switch:
    """Answers a stand-in server gives: `fail(n)` makes the next n matching requests fail."""

    def __init__(self, ok: Answer, failure: tuple[int, dict[str, Any]] = (503, {})) -> None:
        self._ok = ok
        self._failure = failure
        self.failures_left = 0
        self.down = False
        self.only: Callable[[Recorded], bool] = lambda _: True

    def fail(self, times: int, only: Callable[[Recorded], bool] = lambda _: True) -> None:
        self.failures_left, self.only = times, only

    def __call__(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        if self.only(request) and (self.down or self.failures_left > 0):
            self.failures_left -= 1
            return self._failure
        return self._ok(request)


def wechat_answer(request: Recorded) -> tuple[int, dict[str, Any]]:
    if "key=broken" in request.query:
        return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
    return 200, {"errcode": 0, "errmsg": "ok"}


def gateway_ok(request: Recorded) -> tuple[int, dict[str, Any]]:
    return 200, {"message_id": "gw-" + request.json()["reference"][-24:]}


def tencent_ok(request: Recorded) -> tuple[int, dict[str, Any]]:
    serial = "2433:" + hashlib.sha1(request.body).hexdigest()[:16]  # noqa: S324 - a test id
    phone = request.json()["PhoneNumberSet"][0]
    status = {"SerialNo": serial, "PhoneNumber": phone, "Fee": 1, "Code": "Ok", "Message": "ok"}
    return 200, {"Response": {"SendStatusSet": [status], "RequestId": uuid.uuid4().hex}}


def to_phone(phone: str) -> Callable[[Recorded], bool]:
    return lambda request: request.json().get("to") == f"+86{phone}"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
async def wechat() -> AsyncIterator[RecordingServer]:
    async with RecordingServer(wechat_answer) as server:
        yield server


@pytest.fixture
async def sms() -> AsyncIterator[RecordingServer]:
    async with RecordingServer(Switch(gateway_ok)) as server:
        yield server


@pytest.fixture
async def calls() -> AsyncIterator[RecordingServer]:
    async with RecordingServer(
        lambda r: (202, {"task_id": "call-" + r.json()["task_id"][-8:]})
    ) as s:
        yield s


@pytest.fixture
async def hotline() -> AsyncIterator[RecordingServer]:
    async with RecordingServer(Switch(lambda _: (204, {}), (500, {}))) as server:
        yield server


def switch(server: RecordingServer) -> Switch:
    answer = server._answer
    assert isinstance(answer, Switch)
    return answer


@pytest.fixture
def env(
    amqp_url: str,
    mongo_url: str,
    db_name: str,
    wechat: RecordingServer,
    mailbox: tuple[Mailbox, int],
    sms: RecordingServer,
    calls: RecordingServer,
    hotline: RecordingServer,
) -> dict[str, str]:
    return service_env(amqp_url, mongo_url, db_name) | {
        "WECHAT_WORK_WEBHOOK_URL": f"{wechat.url}/cgi-bin/webhook/send?key=team",
        "DUTY_DESK_WEBHOOK_URL": f"{wechat.url}/cgi-bin/webhook/send?key=duty",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(mailbox[1]),
        "SMS_PROVIDER": "generic",
        "SMS_GATEWAY_URL": f"{sms.url}/v1/sms",
        "SMS_GATEWAY_TOKEN": "gateway-token",
        "CALL_CENTRE_URL": f"{calls.url}/v1/call-tasks",
        "CALL_CENTRE_TOKEN": "call-token",
        "HOTLINE_CALLBACKS": json.dumps({SOURCE: {"url": f"{hotline.url}/cb", "secret": SECRET}}),
        "NOTIFY_RETRY_BASE_S": "0.2",
        "NOTIFY_MAX_ATTEMPTS": "3",
        "SMS_RECEIPT_TOKEN": "receipt-token",
    }


def notify_app(env: dict[str, str], **changes: str) -> Any:
    return build_app(NotifySettings(**(env | changes)))  # type: ignore[arg-type]


@pytest.fixture
async def notify(
    db: AsyncDatabase[Document], env: dict[str, str], listener: EventListener
) -> AsyncIterator[httpx.AsyncClient]:
    await listener.bind("outreach.*")
    await upsert_helpers(db, [VOLUNTEER, AGENCY], utcnow(), PERSON_SECRET)
    async with running(notify_app(env)) as client:
        yield client


# ------------------------------------------------------------------ cases and events


async def new_case(
    db: AsyncDatabase[Document],
    category: str = "visual",
    carer_phone: str | None = None,
    preferred: str | None = None,
) -> tuple[str, HardshipReported]:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = f"WH-{uuid.uuid4().hex[:10]}"
    body["person"].update(
        disability={"category": category, "grade": 1},
        carer_phone=carer_phone,
        preferred_channel=preferred,
    )
    document, reported = open_case(
        HardshipReport.model_validate(body), uuid.uuid4().hex, utcnow(), DEV_CIPHER, PERSON_SECRET
    )
    await db[CASES].insert_one(document)
    return str(document["_id"]), reported


async def publish(amqp: aio_pika.abc.AbstractRobustConnection, event: Event) -> None:
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    await exchange.publish(
        aio_pika.Message(event.model_dump_json().encode()), routing_key=event.routing_key
    )
    await channel.close()


def assigned(case_id: str, helper: HelperRecord, offer_id: str = "o1") -> CaseAssigned:
    return CaseAssigned(
        case_id=case_id,
        source=SOURCE,
        external_id="WH-assigned",
        helper=AssignedHelper(
            helper_id=helper.id, kind=helper.kind, name=helper.name, distance_km=1.5
        ),
        need="medicine",
        urgency="immediate",
        division_code="420103",
        received_at=utcnow(),
        offer_id=offer_id,
        respond_url=f"http://127.0.0.1:8001/v1/offers/token-{offer_id}",
    )


def accepted(case_id: str, external_id: str = "WH-accepted") -> CaseAccepted:
    return CaseAccepted(
        case_id=case_id,
        source=SOURCE,
        external_id=external_id,
        offer_id="o1",
        helper=AssignedHelper(helper_id=VOLUNTEER.id, kind=HelperKind.volunteer, name="李红"),
    )


async def attempts(
    db: AsyncDatabase[Document], case_id: str, purpose: str
) -> list[tuple[str, str]]:
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None
    return [(a["channel"], a["status"]) for a in case["outreach"] if a["purpose"] == purpose]


async def settled(
    db: AsyncDatabase[Document], case_id: str, purpose: str, expected: list[tuple[str, str]]
) -> None:
    async def done() -> bool:
        return await attempts(db, case_id, purpose) == expected

    try:
        await wait_for(done)
    except AssertionError:
        assert await attempts(db, case_id, purpose) == expected  # shows the difference


def requests_to(server: RecordingServer, phone: str) -> list[dict[str, Any]]:
    return [r.json() for r in server.requests if r.json().get("to") == f"+86{phone}"]


# ------------------------------------------------------------------ helpers hear of offers


async def test_volunteer_is_told_through_wechat_work_with_a_mention_and_it_is_recorded(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    wechat: RecordingServer,
    listener: EventListener,
) -> None:
    case_id, _ = await new_case(db)
    await publish(amqp, assigned(case_id, VOLUNTEER))
    sent = await listener.wait("outreach.sent", case_id, count=2)
    assert {(s["channel"], s["purpose"]) for s in sent} == {
        ("wechat_work", "assignment"),
        ("hotline", "status_assigned"),
    }
    [request] = wechat.requests
    assert request.query == "key=team"
    body = request.json()
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == [HELPER_PHONE]
    content = body["text"]["content"]
    assert "买药" in content and "江汉区" in content and "1.5 公里" in content
    assert "http://127.0.0.1:8001/v1/offers/token-o1" in content
    assert EXAMPLE["location"]["address"] not in content
    [attempt] = await attempts(db, case_id, "assignment")
    assert attempt == ("wechat_work", "sent")
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None and all("key=team" not in a["recipient"] for a in case["outreach"])


async def test_redelivered_event_sends_nothing_new(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    wechat: RecordingServer,
    hotline: RecordingServer,
    listener: EventListener,
) -> None:
    case_id, _ = await new_case(db)
    event = assigned(case_id, VOLUNTEER)
    await publish(amqp, event)
    await listener.wait("outreach.sent", case_id, count=2)
    await publish(amqp, event)
    sentinel, _ = await new_case(db)  # processed after the redelivery on the same queue
    await publish(amqp, assigned(sentinel, VOLUNTEER))
    await listener.wait("outreach.sent", sentinel, count=2)
    told = [case_id in r.json()["text"]["content"] for r in wechat.requests]
    assert told == [True, False]
    assert [json.loads(r.body)["data"]["case_id"] for r in hotline.requests] == [case_id, sentinel]
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None and len(case["outreach"]) == 2
    assert len(listener.of("outreach.sent", case_id)) == 2


async def test_a_new_offer_of_the_same_case_is_a_new_message(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    case_id, _ = await new_case(db)
    await publish(amqp, assigned(case_id, VOLUNTEER, "o1"))
    await publish(amqp, assigned(case_id, AGENCY, "o2"))
    await listener.wait("outreach.sent", case_id, count=4)
    assert await attempts(db, case_id, "status_assigned") == [("hotline", "sent")] * 2


async def test_agency_gets_a_work_order_by_email_in_plain_text_and_html(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    mailbox: tuple[Mailbox, int],
    listener: EventListener,
) -> None:
    case_id, _ = await new_case(db)
    await publish(amqp, assigned(case_id, AGENCY))
    await listener.wait("outreach.sent", case_id, count=2)
    [message] = mailbox[0].messages
    assert message["To"] == "mzj@example.gov.cn"
    assert "工单转办" in str(message["Subject"])
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    assert "受理或退回：http://127.0.0.1:8001/v1/offers/token-o1" in plain.get_content()
    assert '<a href="http://127.0.0.1:8001/v1/offers/token-o1">' in html.get_content()
    assert EXAMPLE["location"]["address"] not in plain.get_content()


async def test_agency_with_its_own_system_gets_the_work_order_there_signed(
    db: AsyncDatabase[Document],
    env: dict[str, str],
    amqp: aio_pika.abc.AbstractRobustConnection,
    mailbox: tuple[Mailbox, int],
    listener: EventListener,
) -> None:
    await listener.bind("outreach.*")
    async with RecordingServer(lambda _: (200, {})) as system:
        contact = Contact(email="mzj@example.gov.cn", webhook=f"{system.url}/work-orders")
        await upsert_helpers(db, [AGENCY.model_copy(update={"contact": contact})], utcnow(), b"k")
        async with running(notify_app(env, WORK_ORDER_WEBHOOK_SECRET=SECRET)):
            case_id, _ = await new_case(db)
            await publish(amqp, assigned(case_id, AGENCY))
            await settled(db, case_id, "work_order", [("webhook", "sent")])
    [order] = system.requests
    body = Webhook(SECRET).verify(order.body, order.headers)
    assert body["type"] == "carerelay.work_order_agency"
    assert body["data"]["respond_url"] == "http://127.0.0.1:8001/v1/offers/token-o1"
    assert body["data"]["need"] == "买药/送药" and "工单转办" in body["data"]["subject"]
    assert EXAMPLE["location"]["address"] not in order.body.decode()
    assert mailbox[0].messages == []


async def test_escalation_reaches_the_duty_desk_in_markdown_with_its_reason(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    wechat: RecordingServer,
    hotline: RecordingServer,
    listener: EventListener,
) -> None:
    case_id, _ = await new_case(db)
    await publish(
        amqp,
        CaseEscalated(
            case_id=case_id,
            source=SOURCE,
            external_id="WH-esc",
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
    await listener.wait("outreach.sent", case_id, count=2)
    [request] = wechat.requests
    assert request.query == "key=duty"
    body = request.json()
    assert body["msgtype"] == "markdown"
    assert "附近没有符合条件的志愿者或机构" in body["markdown"]["content"]
    [callback] = hotline.requests
    data = callback.json()["data"]
    assert (data["status"], data["external_id"]) == ("escalated", "WH-esc")
    assert "附近没有符合条件的志愿者或机构" in data["summary"]


async def test_failed_channel_falls_back_to_the_next_and_both_attempts_are_recorded(
    db: AsyncDatabase[Document],
    env: dict[str, str],
    amqp: aio_pika.abc.AbstractRobustConnection,
    mailbox: tuple[Mailbox, int],
    wechat: RecordingServer,
    listener: EventListener,
) -> None:
    await listener.bind("outreach.*")
    contact = Contact(email="li.hong@example.org")
    await upsert_helpers(db, [VOLUNTEER.model_copy(update={"contact": contact})], utcnow(), b"k")
    broken = f"{wechat.url}/cgi-bin/webhook/send?key=broken"
    async with running(notify_app(env, WECHAT_WORK_WEBHOOK_URL=broken)):
        case_id, _ = await new_case(db)
        await publish(amqp, assigned(case_id, VOLUNTEER))
        await settled(db, case_id, "assignment", [("wechat_work", "failed"), ("email", "sent")])
    [failed] = listener.of("outreach.failed", case_id)
    assert (failed["channel"], failed["fallback"], failed["error"]) == (
        "wechat_work",
        "email",
        "errcode_93000",
    )
    assert len(wechat.requests) == 1  # a permanent error is not retried
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None and case["outreach"][1]["recipient"] == "l***@example.org"


# ------------------------------------------------------------------ the person, by ability


async def test_blind_person_gets_a_voice_task_and_the_helper_the_address_by_sms(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    sms: RecordingServer,
    calls: RecordingServer,
    wechat: RecordingServer,
    listener: EventListener,
) -> None:
    case_id, _ = await new_case(db, "visual")
    await publish(amqp, accepted(case_id))
    await listener.wait("outreach.sent", case_id, count=3)
    [call] = calls.requests
    assert call.headers["authorization"] == "Bearer call-token"
    assert call.json() == {
        "task_id": f"{case_id}:arranged:o1:person:person:voice:1",
        "callee": f"+86{PERSON_PHONE}",
        "caller_id": "",
        "script": "您好，张秀英。这里是残联助残服务。 您反映的困难，已经安排志愿者 李红帮助您。 "
        "对方会在30分钟内给您打电话，来电尾号是 1111。 如有变化，请拨打一二三四五。",
        "repeat": 2,
        "language": "zh-CN",
    }
    assert requests_to(sms, PERSON_PHONE) == []
    [details] = requests_to(sms, HELPER_PHONE)
    assert sms.requests[0].headers["authorization"] == "Bearer gateway-token"
    assert details["template_id"] == "2000004"
    assert details["params"]["address"] == EXAMPLE["location"]["address"]
    assert details["params"]["call_number"] == PERSON_PHONE
    assert "视力残疾" in details["text"] and EXAMPLE["location"]["address"] in details["text"]
    assert wechat.requests == []  # personal data never goes to a group chat
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None
    assert {a["recipient"] for a in case["outreach"] if a["purpose"] != "status_accepted"} == {
        "*******1111",
        "*******8000",
    }


async def test_deaf_person_gets_an_sms_and_never_a_voice_task(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    sms: RecordingServer,
    calls: RecordingServer,
    listener: EventListener,
) -> None:
    case_id, _ = await new_case(db, "hearing", preferred="voice")
    await publish(amqp, accepted(case_id))
    await listener.wait("outreach.sent", case_id, count=3)
    [text] = requests_to(sms, PERSON_PHONE)
    assert text == {
        "to": f"+86{PERSON_PHONE}",
        "text": "张秀英，您好：您反映的困难已安排志愿者 李红帮助您，对方将在30分钟内与您联系，"
        "来电尾号1111。如有变化，请拨打12345。\n",
        "sign_name": "CareRelay",
        "template_id": "2000005",
        "params": {
            "person_name": "张秀英",
            "helper": "志愿者 李红",
            "contact_within": "30分钟内",
            "helper_phone_tail": "1111",
        },
        "reference": f"{case_id}:arranged:o1:person:person:sms:1",
    }
    assert calls.requests == []
    [details] = requests_to(sms, HELPER_PHONE)
    assert "听力残疾" in details["params"]["contact_hint"]

    message_id = gateway_ok(sms.requests[-1])[1]["message_id"]  # the answer the gateway gave
    receipt = {"message_id": message_id, "status": "undeliverable", "error": "UNDELIV"}
    answer = await notify.post("/v1/receipts/sms?token=receipt-token", json=receipt)
    assert answer.json() == {"received": 1, "matched": 1}
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None
    [attempt] = [a for a in case["outreach"] if a.get("provider_id") == f"sms:{message_id}"]
    assert (attempt["receipt"]["status"], attempt["receipt"]["error"]) == ("failed", "UNDELIV")
    unknown = {"message_id": "never-sent", "status": "delivered"}
    assert (await notify.post("/v1/receipts/sms?token=receipt-token", json=unknown)).json() == {
        "received": 1,
        "matched": 0,
    }


async def test_intellectual_disability_case_reaches_the_carer(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    sms: RecordingServer,
    calls: RecordingServer,
    listener: EventListener,
) -> None:
    case_id, _ = await new_case(db, "intellectual", carer_phone=CARER_PHONE)
    await publish(amqp, accepted(case_id))
    await listener.wait("outreach.sent", case_id, count=3)
    [to_carer] = requests_to(sms, CARER_PHONE)
    assert to_carer["template_id"] == "2000006"
    assert "您照料的张秀英" in to_carer["text"]
    assert requests_to(sms, PERSON_PHONE) == [] and calls.requests == []
    [details] = requests_to(sms, HELPER_PHONE)
    assert details["params"]["call_number"] == CARER_PHONE
    assert details["params"]["call_whom"] == "照料人"
    sent = {s["recipient_kind"] for s in listener.of("outreach.sent", case_id)}
    assert sent == {"carer", "volunteer", "hotline"}


# ------------------------------------------------------------------ retries and fallbacks


async def test_gateway_failing_twice_then_succeeding_gives_one_message_across_a_restart(
    db: AsyncDatabase[Document],
    env: dict[str, str],
    amqp: aio_pika.abc.AbstractRobustConnection,
    sms: RecordingServer,
    calls: RecordingServer,
    listener: EventListener,
) -> None:
    await listener.bind("outreach.*")
    await upsert_helpers(db, [VOLUNTEER], utcnow(), PERSON_SECRET)
    switch(sms).fail(2, only=to_phone(PERSON_PHONE))
    case_id, _ = await new_case(db, "hearing")
    async with running(notify_app(env)):
        await publish(amqp, accepted(case_id))
        await settled(db, case_id, "arranged", [("sms", "failed")])
    # notify is down while the retry waits in its delay queue; a new process picks it up
    async with running(notify_app(env)):
        await settled(db, case_id, "arranged", [("sms", "failed")] * 2 + [("sms", "sent")])
    to_person = requests_to(sms, PERSON_PHONE)
    assert [r["reference"][-5:] for r in to_person] == ["sms:1", "sms:2", "sms:3"]
    assert len({json.dumps(r["params"]) for r in to_person}) == 1  # the same message each time
    arranged = [s for s in listener.of("outreach.sent", case_id) if s["purpose"] == "arranged"]
    assert len(arranged) == 1
    assert listener.of("outreach.failed", case_id) == [] and calls.requests == []


async def test_gateway_down_for_good_gives_outreach_failed_and_the_call_is_made(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    sms: RecordingServer,
    calls: RecordingServer,
    listener: EventListener,
) -> None:
    gateway = switch(sms)
    gateway.down, gateway.only = True, to_phone(PERSON_PHONE)
    case_id, _ = await new_case(db, "physical")
    await publish(amqp, accepted(case_id))
    await settled(db, case_id, "arranged", [("sms", "failed")] * 3 + [("voice", "sent")])
    [failed] = await listener.wait("outreach.failed", case_id)
    assert {k: failed[k] for k in ("channel", "purpose", "attempts", "fallback", "error")} == {
        "channel": "sms",
        "purpose": "arranged",
        "attempts": 3,
        "fallback": "voice",
        "error": "http_503",
    }
    assert len(requests_to(sms, PERSON_PHONE)) == 3
    [call] = calls.requests
    assert call.json()["callee"] == f"+86{PERSON_PHONE}"
    metrics = (await notify.get("/metrics")).text
    assert 'carerelay_notify_failed_total{channel="sms",purpose="arranged"} 1.0' in metrics
    assert 'carerelay_notify_retries_total{channel="sms"} 2.0' in metrics
    assert 'carerelay_notify_attempts_total{channel="voice"} 1.0' in metrics
    assert 'carerelay_notify_sends_total{channel="sms",purpose="arranged",result="failed"} 3.0' in (
        metrics
    )
    assert PERSON_PHONE not in metrics and case_id not in metrics


async def test_undeliverable_message_is_dead_lettered_and_an_operator_replays_it(
    db: AsyncDatabase[Document],
    env: dict[str, str],
    amqp: aio_pika.abc.AbstractRobustConnection,
    sms: RecordingServer,
    calls: RecordingServer,
    listener: EventListener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await listener.bind("outreach.*")
    await upsert_helpers(db, [VOLUNTEER], utcnow(), PERSON_SECRET)
    gateway = switch(sms)
    gateway.down, gateway.only = True, to_phone(PERSON_PHONE)
    case_id, _ = await new_case(db, "speech")
    for name in ("AMQP_URL", "MONGO_URL", "MONGO_DB"):
        monkeypatch.setenv(name, env[name])
    async with running(notify_app(env, CONSOLE_CHANNEL_ENABLED="false")):
        await publish(amqp, accepted(case_id))
        await settled(db, case_id, "arranged", [("sms", "failed")] * 3)
        [failed] = await listener.wait("outreach.failed", case_id)
        assert failed["fallback"] == ""
        letter_id = f"{case_id}:arranged:o1:person:person"
        letter = await wait_for(lambda: db[OutreachDeadLetter.collection].find_one(letter_id))
        assert (letter["status"], letter["attempts"], letter["channels"]) == ("open", 3, ["sms"])

        listing = await asyncio.to_thread(run_cli, "outreach", "failed")
        assert letter_id in listing and PERSON_PHONE not in listing

        gateway.down = False
        replayed = await asyncio.to_thread(run_cli, "outreach", "replay", letter_id)
        assert f"replayed {letter_id}" in replayed
        await settled(db, case_id, "arranged", [("sms", "failed")] * 3 + [("sms", "sent")])
    [last] = requests_to(sms, PERSON_PHONE)[-1:]
    assert last["reference"].endswith(":sms:4")
    stored = await db[OutreachDeadLetter.collection].find_one(letter_id)
    assert stored is not None and (stored["status"], stored["replays"]) == ("replayed", 1)
    assert "nothing replayed" in await asyncio.to_thread(run_cli, "outreach", "replay", letter_id)
    assert calls.requests == []


def run_cli(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        cli.main(list(argv))
    return out.getvalue()


# ------------------------------------------------------------------ the hotline


async def test_hotline_hears_every_status_signed_so_it_can_verify_and_spot_tampering(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    hotline: RecordingServer,
    listener: EventListener,
) -> None:
    case_id, reported = await new_case(db, "physical")
    await publish(amqp, reported)
    await listener.wait("outreach.sent", case_id)
    await publish(amqp, assigned(case_id, VOLUNTEER))
    await listener.wait("outreach.sent", case_id, count=3)
    resolved = CaseResolved(
        case_id=case_id,
        source=SOURCE,
        external_id=reported.external_id,
        resolution=Resolution.delivered,
    )
    await publish(amqp, resolved)
    await listener.wait("outreach.sent", case_id, count=4)

    statuses = []
    for request in hotline.requests:
        verified = Webhook(SECRET).verify(request.body, request.headers)
        statuses.append(verified["data"]["status"])
        assert request.headers["webhook-id"].startswith("msg_")
        assert verified["type"] == "case.status" and verified["data"]["case_id"] == case_id
    assert statuses == ["received", "assigned", "resolved"]
    closing = hotline.requests[-1].json()["data"]
    assert closing["external_id"] == reported.external_id
    assert closing["resolution"] == "delivered" and "已办结" in closing["summary"]
    assert PERSON_PHONE not in hotline.requests[0].body.decode()

    request = hotline.requests[-1]
    tampered = request.body.replace(b"delivered", b"helped")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "c2VjcmV0LW9mLWFub3RoZXItaG90bGluZQ==").verify(
            request.body, request.headers
        )


async def test_hotline_callback_is_retried_under_the_same_webhook_id(
    notify: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    hotline: RecordingServer,
) -> None:
    switch(hotline).fail(1)
    case_id, reported = await new_case(db)
    await publish(amqp, reported)
    await settled(db, case_id, "status_received", [("hotline", "failed"), ("hotline", "sent")])
    first, second = hotline.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert Webhook(SECRET).verify(second.body, second.headers)["data"]["status"] == "received"

    async def counted() -> str | None:  # counted just after the record is written
        metrics = (await notify.get("/metrics")).text
        return metrics if 'carerelay_notify_callbacks_total{result="sent"} 1.0' in metrics else None

    assert 'carerelay_notify_callbacks_total{result="failed"} 1.0' in await wait_for(counted)


# ------------------------------------------------------------------ Tencent Cloud SMS, receipts


def tc3_verify(request: Recorded, secret_id: str, secret_key: str) -> bool:
    """Tencent Cloud's signature method v3, recomputed from what the server received."""
    algorithm, _, fields = request.headers["authorization"].partition(" ")
    parts = dict(f.strip().split("=", 1) for f in fields.split(","))
    credential_id, date, service, _ = parts["Credential"].split("/")
    timestamp = int(request.headers["x-tc-timestamp"])
    assert datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") == date
    headers = "".join(
        f"{h}:{request.headers[h].strip().lower()}\n" for h in ("content-type", "host")
    )
    canonical = "\n".join(
        ["POST", "/", "", headers, parts["SignedHeaders"], hashlib.sha256(request.body).hexdigest()]
    )
    to_sign = "\n".join(
        [
            algorithm,
            str(timestamp),
            f"{date}/{service}/tc3_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("TC3" + secret_key).encode()
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return credential_id == secret_id and hmac.compare_digest(expected, parts["Signature"])


async def test_tencent_sms_is_signed_with_tc3_and_its_receipt_updates_the_attempt(
    db: AsyncDatabase[Document],
    env: dict[str, str],
    amqp: aio_pika.abc.AbstractRobustConnection,
    calls: RecordingServer,
    listener: EventListener,
) -> None:
    await listener.bind("outreach.*")
    await upsert_helpers(db, [VOLUNTEER], utcnow(), PERSON_SECRET)
    async with RecordingServer(tencent_ok) as tencent:
        tencent_env = {
            "SMS_PROVIDER": "tencent",
            "TENCENT_SMS_ENDPOINT": tencent.url,
            "TENCENT_SMS_SECRET_ID": "AKIDtest0123456789",
            "TENCENT_SMS_SECRET_KEY": "tencent-secret-key",
            "TENCENT_SMS_SDK_APP_ID": "1400006666",
            "SMS_SIGN_NAME": "武汉残联",
        }
        async with running(notify_app(env, **tencent_env)) as client:
            case_id, _ = await new_case(db, "hearing")
            await publish(amqp, accepted(case_id))
            await listener.wait("outreach.sent", case_id, count=3)

            [to_person] = [r for r in tencent.requests if f"+86{PERSON_PHONE}" in r.body.decode()]
            assert tc3_verify(to_person, "AKIDtest0123456789", "tencent-secret-key")
            forged = Recorded(**{**to_person.__dict__, "body": to_person.body + b" "})
            assert not tc3_verify(forged, "AKIDtest0123456789", "tencent-secret-key")
            assert {h: to_person.headers[h] for h in ("x-tc-action", "x-tc-version")} == {
                "x-tc-action": "SendSms",
                "x-tc-version": "2021-01-11",
            }
            assert to_person.headers["x-tc-region"] == "ap-guangzhou"
            assert to_person.json() == {
                "PhoneNumberSet": [f"+86{PERSON_PHONE}"],
                "SmsSdkAppId": "1400006666",
                "SignName": "武汉残联",
                "TemplateId": "2000005",
                "TemplateParamSet": ["张秀英", "志愿者 李红", "30分钟内", "1111"],
                "SessionContext": f"{case_id}:arranged:o1:person:person:sms:1",
            }
            serial = tencent_ok(to_person)[1]["Response"]["SendStatusSet"][0]["SerialNo"]
            receipt = [
                {
                    "user_receive_time": "2022-11-22 08:20:04",
                    "nationcode": "86",
                    "mobile": PERSON_PHONE,
                    "report_status": "SUCCESS",
                    "errmsg": "DELIVRD",
                    "description": "用户短信送达成功",
                    "sid": serial,
                }
            ]
            refused = await client.post("/v1/receipts/sms?token=wrong", json=receipt)
            assert refused.status_code == 401
            answer = await client.post("/v1/receipts/sms?token=receipt-token", json=receipt)
            assert answer.json() == {"result": 0, "errmsg": "OK"}
            metrics = (await client.get("/metrics")).text
    case = await db[CASES].find_one({"_id": case_id})
    assert case is not None
    [attempt] = [a for a in case["outreach"] if a["purpose"] == "arranged"]
    assert attempt["provider_id"] == f"sms:{serial}"
    assert attempt["receipt"]["status"] == "delivered"
    assert 'carerelay_notify_receipts_total{channel="sms",status="delivered"} 1.0' in metrics
    assert calls.requests == []


# ------------------------------------------------------------------ email over STARTTLS


async def test_email_goes_over_starttls_to_a_server_with_its_own_certificate(
    db: AsyncDatabase[Document],
    env: dict[str, str],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
    tmp_path: Path,
) -> None:
    await listener.bind("outreach.*")
    await upsert_helpers(db, [AGENCY], utcnow(), PERSON_SECRET)
    cert, key = self_signed_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    box, port = Mailbox(), free_port()
    controller = Controller(
        box, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True
    )
    controller.start()
    try:
        tls_env = {"SMTP_PORT": str(port), "SMTP_STARTTLS": "true", "SMTP_CA_FILE": str(cert)}
        async with running(notify_app(env, **tls_env)):
            case_id, _ = await new_case(db)
            await publish(amqp, assigned(case_id, AGENCY))
            await settled(db, case_id, "work_order", [("email", "sent")])
    finally:
        controller.stop()
    [message] = box.messages
    assert box.over_tls == [True]
    assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None


# ------------------------------------------------------------------ round trips on the hot path


class CommandLog(monitoring.CommandListener):
    def __init__(self, database: str) -> None:
        self.database = database
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == self.database:
            collection = event.command.get(event.command_name)
            self.commands.append(f"{event.command_name} {collection}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


async def test_an_offer_costs_one_write_before_the_helper_is_told_and_one_after(
    db: AsyncDatabase[Document],
    db_name: str,
    env: dict[str, str],
    amqp: aio_pika.abc.AbstractRobustConnection,
    wechat: RecordingServer,
    listener: EventListener,
) -> None:
    await listener.bind("outreach.*")
    await upsert_helpers(db, [VOLUNTEER], utcnow(), PERSON_SECRET)
    log = CommandLog(db_name)
    monitoring.register(log)  # applies to clients created from here on: the app's
    async with running(notify_app(env)):
        case_id, _ = await new_case(db)
        log.commands.clear()
        await publish(amqp, assigned(case_id, VOLUNTEER))
        await listener.wait("outreach.sent", case_id, count=2)
    during = [c for c in log.commands if c.endswith(CASES) or c.endswith("helpers")]
    # helper: record, send, finish; hotline callback: record, send, finish; no reads at all
    assert during == [f"update {CASES}"] * 4
    assert len(wechat.requests) == 1
