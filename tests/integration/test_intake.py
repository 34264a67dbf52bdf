"""Intake against the real RabbitMQ and a real MongoDB-wire server."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import build_app
from services.intake.metrics import IntakeMetrics
from services.intake.repository import MongoCaseRepository
from services.intake.settings import IntakeSettings
from services.intake.usecases import Intake
from shared.contracts import HardshipReport, utcnow
from shared.outbox import Flush, Outbox
from shared.people import open_case_personal_data
from shared.storage import CASES, Document
from shared.topology import EVENTS, INTAKE_REPORTS
from tests.support import (
    DEV_CIPHER,
    PERSON_SECRET,
    EventListener,
    bearer,
    issue_key,
    running,
    service_env,
    wait_for,
)

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]


def report(external_id: str, **person: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = external_id
    body["person"].update(person)
    return body


@pytest.fixture
async def intake(
    amqp_url: str,
    mongo_url: str,
    db_name: str,
    db: AsyncDatabase[Document],
    listener: EventListener,
) -> AsyncIterator[httpx.AsyncClient]:
    await listener.bind("hardship.reported")
    token, _ = await issue_key(db)
    settings = IntakeSettings(**service_env(amqp_url, mongo_url, db_name))  # type: ignore[arg-type]
    async with running(build_app(settings)) as client:
        client.headers.update(bearer(token))
        yield client


async def test_report_is_stored_and_published_once(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document], listener: EventListener
) -> None:
    response = await intake.post("/v1/reports", json=report("T-1"))
    assert response.status_code == 202
    case_id = response.json()["case_id"]
    assert response.json()["status_url"] == f"/v1/cases/{case_id}"

    [event] = await listener.wait("hardship.reported", case_id)
    assert event["facts"]["need"] == "medicine" and event["schema_version"] == 1
    stored = await db[CASES].find_one({"_id": case_id})
    assert stored is not None and stored["status"] == "received"

    async def cleared() -> bool:  # marks are cleared in batches, every OUTBOX_CLEAR_INTERVAL_S
        return await db[CASES].count_documents({"_id": case_id, "outbox": {"$exists": True}}) == 0

    assert await wait_for(cleared), "a confirmed publish clears the outbox mark"

    view = (await intake.get(f"/v1/cases/{case_id}")).json()
    assert view["status"] == "received" and view["need"] == "medicine"
    assert [t["status"] for t in view["timeline"]] == ["received"]


async def test_published_event_carries_no_personal_data(
    intake: httpx.AsyncClient, listener: EventListener
) -> None:
    body = report("T-PII", name="王小明", phone="13912345678")
    case_id = (await intake.post("/v1/reports", json=body)).json()["case_id"]
    await listener.wait("hardship.reported", case_id)
    [message] = [m for key, event, m in listener.received if event["case_id"] == case_id]
    raw = (
        message.body.decode() + json.dumps(message.headers, default=str) + str(message.routing_key)
    )
    for secret in ("王小明", "13912345678", EXAMPLE["location"]["address"]):
        assert secret not in raw


async def test_personal_data_is_sealed_at_rest_and_opens_with_the_key(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    secrets = {
        "name": "王小明",
        "phone": "13912345678",
        "carer_phone": "13787654321",
        "id_number": "42010319560312002X",
        "certificate_number": "42010319560312002X11",
    }
    case_id = (await intake.post("/v1/reports", json=report("T-SEAL", **secrets))).json()["case_id"]
    stored = await db[CASES].find_one({"_id": case_id})
    assert stored is not None
    raw = json.dumps(stored, default=str, ensure_ascii=False)
    for plain in (*secrets.values(), EXAMPLE["location"]["address"], EXAMPLE["description"]):
        assert plain not in raw
    assert stored["person"]["disability"] == {"category": "visual", "grade": 1}
    assert stored["person"]["id_key"] and stored["person"]["person_key"]

    opened = open_case_personal_data(stored, DEV_CIPHER)
    assert (opened.name, opened.phone, opened.carer_phone) == (
        "王小明",
        "13912345678",
        "13787654321",
    )
    assert opened.certificate_number == secrets["certificate_number"]
    assert opened.address == EXAMPLE["location"]["address"]


async def test_same_ticket_posted_twice_is_one_case_and_one_event(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document], listener: EventListener
) -> None:
    first = await intake.post("/v1/reports", json=report("T-2"))
    again = await intake.post("/v1/reports", json=report("T-2"))
    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True}
    await listener.wait("hardship.reported", first.json()["case_id"])
    assert await db[CASES].count_documents({"external_id": "T-2"}) == 1
    assert len(listener.of("hardship.reported", first.json()["case_id"])) == 1


async def test_bad_report_is_refused_naming_each_field_and_nothing_is_stored(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    body = report("T-3")
    body["need"] = "unicorns"
    body["person"]["disability"]["grade"] = 7
    body["location"]["lat"] = 200
    response = await intake.post("/v1/reports", json=body)
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["fields"]}
    assert fields == {"need", "person.disability.grade", "location.lat"}
    assert "person.disability.grade" in response.json()["message"]
    assert await db[CASES].count_documents({}) == 0


async def test_unknown_case_is_404(intake: httpx.AsyncClient) -> None:
    assert (await intake.get("/v1/cases/does-not-exist")).status_code == 404


async def test_report_published_over_amqp_becomes_a_case(
    intake: httpx.AsyncClient,
    amqp: aio_pika.abc.AbstractRobustConnection,
    db: AsyncDatabase[Document],
    listener: EventListener,
) -> None:
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    await exchange.publish(
        aio_pika.Message(
            json.dumps(report("T-AMQP")).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=INTAKE_REPORTS.routing_key,
    )
    case = await wait_for(lambda: db[CASES].find_one({"external_id": "T-AMQP"}))
    await listener.wait("hardship.reported", case["_id"])


async def test_malformed_amqp_report_is_dead_lettered_not_retried(
    intake: httpx.AsyncClient,
    amqp: aio_pika.abc.AbstractRobustConnection,
    db: AsyncDatabase[Document],
) -> None:
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    await exchange.publish(
        aio_pika.Message(b'{"source": "x", "need": "nope"}'), routing_key=INTAKE_REPORTS.routing_key
    )
    dlq = await channel.get_queue(INTAKE_REPORTS.dead_letter_queue)

    async def dead_letter() -> aio_pika.abc.AbstractIncomingMessage | None:
        return await dlq.get(no_ack=True, fail=False)

    message = await wait_for(dead_letter)
    assert json.loads(message.body)["need"] == "nope"
    assert await db[CASES].count_documents({}) == 0


async def test_outbox_relay_publishes_what_the_broker_missed(db: AsyncDatabase[Document]) -> None:
    published: list[tuple[str, dict[str, Any]]] = []
    broker_up = False

    async def publish(routing_key: str, body: dict[str, Any]) -> None:
        if not broker_up:
            raise ConnectionError("broker unreachable")
        published.append((routing_key, body))

    outbox = Outbox(db[CASES], publish)
    intake = Intake(
        MongoCaseRepository(db),
        outbox,
        b"k",
        IntakeMetrics.create(CollectorRegistry()),
        DEV_CIPHER,
        PERSON_SECRET,
    )
    accepted = await intake.accept(HardshipReport.model_validate(report("T-OUTBOX")), "test")
    stored = await db[CASES].find_one({"_id": accepted.case_id})
    assert stored is not None and stored["outbox"][0]["routing_key"] == "hardship.reported"

    broker_up = True
    relayed = await outbox.relay(older_than=utcnow() + timedelta(seconds=1))
    assert relayed[Flush.published] == 1
    assert [(key, body["case_id"]) for key, body in published] == [
        ("hardship.reported", accepted.case_id)
    ]
    assert sum((await outbox.relay(older_than=utcnow() + timedelta(seconds=1))).values()) == 0
    stored = await db[CASES].find_one({"_id": accepted.case_id})
    assert stored is not None and "outbox" not in stored
