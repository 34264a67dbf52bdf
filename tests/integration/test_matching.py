"""Matching against the real RabbitMQ and a real MongoDB-wire server."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.domain import open_case
from services.matching.app import build_app
from services.matching.settings import MatchingSettings
from shared.contracts import HardshipReport, HardshipReported, HelperKind, HelperRecord, utcnow
from shared.registry import upsert_helpers
from shared.storage import CASES, HELPERS, Document
from shared.topology import EVENTS, MATCHING_REPORTED
from tests.support import DEV_CIPHER, PERSON_SECRET, EventListener, running, service_env, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
LAT, LON = EXAMPLE["location"]["lat"], EXAMPLE["location"]["lon"]


def volunteer(id: str, km_north: float, capacity: int = 2) -> HelperRecord:
    return HelperRecord(
        id=id,
        kind=HelperKind.volunteer,
        name=f"志愿者{id}",
        lat=LAT + km_north / 111.2,
        lon=LON,
        radius_km=5,
        capacity=capacity,
    )


DESK = HelperRecord(
    id="desk",
    kind=HelperKind.duty_desk,
    name="武汉市残联值班室",
    divisions=["420100"],
    capacity=100000,
)


async def new_case(db: AsyncDatabase[Document], **changes: Any) -> HardshipReported:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = uuid.uuid4().hex
    body["location"].update(changes)
    document, event = open_case(
        HardshipReport.model_validate(body), uuid.uuid4().hex, utcnow(), DEV_CIPHER, PERSON_SECRET
    )
    await db[CASES].insert_one(document)
    return event


async def publish(amqp: aio_pika.abc.AbstractRobustConnection, body: bytes) -> None:
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    await exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=MATCHING_REPORTED.routing_key,
    )
    await channel.close()


async def start(
    db: AsyncDatabase[Document],
    helpers: list[HelperRecord],
    amqp_url: str,
    mongo_url: str,
    db_name: str,
) -> MatchingSettings:
    await upsert_helpers(db, helpers, utcnow(), PERSON_SECRET)
    return MatchingSettings(**service_env(amqp_url, mongo_url, db_name))  # type: ignore[arg-type]


@pytest.fixture
async def matching(
    db: AsyncDatabase[Document],
    amqp_url: str,
    mongo_url: str,
    db_name: str,
    listener: EventListener,
) -> AsyncIterator[httpx.AsyncClient]:
    await listener.bind("case.*")
    settings = await start(
        db, [volunteer("near", 1.0), volunteer("far", 3.0), DESK], amqp_url, mongo_url, db_name
    )
    async with running(build_app(settings)) as client:
        yield client


async def test_case_goes_to_the_nearest_volunteer_and_their_capacity_is_claimed(
    matching: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    event = await new_case(db)
    await publish(amqp, event.model_dump_json().encode())
    [assigned] = await listener.wait("case.assigned", event.case_id)
    assert assigned["helper"]["helper_id"] == "near"
    assert (assigned["source"], assigned["external_id"]) == (event.source, event.external_id)
    case = await db[CASES].find_one({"_id": event.case_id})
    assert case is not None and case["status"] == "assigned"
    assert [c["helper_id"] for c in case["decision"]["candidates"]] == ["near", "far"]
    assert [t["status"] for t in case["timeline"]] == ["received", "assigned"]
    helper = await db[HELPERS].find_one({"_id": "near"})
    assert helper is not None and helper["load"] == 1 and helper["case_ids"] == [event.case_id]


async def test_redelivered_event_assigns_nothing_new_and_repeats_the_same_announcement(
    matching: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    event = await new_case(db)
    for _ in range(3):
        await publish(amqp, event.model_dump_json().encode())
    announcements = await listener.wait("case.assigned", event.case_id, count=3)
    assert len({a["event_id"] for a in announcements}) == 1
    loads = {h["_id"]: h["load"] async for h in db[HELPERS].find({"kind": "volunteer"})}
    assert sum(loads.values()) == 1


async def test_report_with_nobody_in_range_is_escalated_to_the_duty_desk(
    matching: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    event = await new_case(db, lat=LAT + 1.0)  # 111 km north of every volunteer
    await publish(amqp, event.model_dump_json().encode())
    [escalated] = await listener.wait("case.escalated", event.case_id)
    assert escalated["helper"]["helper_id"] == "desk"
    assert escalated["reason"] == "no_eligible_helper"
    case = await db[CASES].find_one({"_id": event.case_id})
    assert case is not None and case["status"] == "escalated"


async def test_fifty_reports_at_once_never_push_a_volunteer_past_capacity(
    matching: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    events = [await new_case(db) for _ in range(50)]
    await asyncio.gather(*(publish(amqp, e.model_dump_json().encode()) for e in events))

    async def all_decided() -> bool:
        return await db[CASES].count_documents({"status": {"$ne": "received"}}) == 50

    await wait_for(all_decided, timeout=60)
    async for helper in db[HELPERS].find({"kind": "volunteer"}):
        assert helper["load"] == len(helper["case_ids"]) <= helper["capacity"]
    assert await db[CASES].count_documents({"status": "assigned"}) == 4
    assert await db[CASES].count_documents({"status": "escalated"}) == 46


async def test_unreadable_event_is_dead_lettered(
    matching: httpx.AsyncClient,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    await publish(amqp, b'{"case_id": "x", "facts": "not facts"}')
    channel = await amqp.channel()
    dlq = await channel.get_queue(MATCHING_REPORTED.dead_letter_queue)

    async def dead_letter() -> aio_pika.abc.AbstractIncomingMessage | None:
        return await dlq.get(no_ack=True, fail=False)

    message = await wait_for(dead_letter)
    assert json.loads(message.body)["case_id"] == "x"
