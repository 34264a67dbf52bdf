"""Nothing accepted is lost and nothing healthy is dead-lettered: overload, poison messages,
a database that goes away, and topology that exists before anyone consumes."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import build_app as build_intake
from services.intake.settings import IntakeSettings
from services.matching.app import build_app as build_matching
from services.matching.settings import MatchingSettings
from shared.contracts import HardshipReport, HelperKind, HelperRecord, utcnow
from shared.messaging import build_broker
from shared.registry import upsert_helpers
from shared.settings import CommonSettings
from shared.storage import CASES, Document
from shared.topology import (
    EVENTS,
    MATCHING_REPORTED,
    NOTIFY_REPORTED,
    declare_topology,
    work_queue,
)
from tests.conftest import virtual_host
from tests.proxy import TcpProxy
from tests.support import (
    PERSON_SECRET,
    EventListener,
    bearer,
    issue_key,
    running,
    service_env,
    wait_for,
)

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A virtual host per test: these tests declare queues with different limits."""
    with virtual_host() as url:
        yield url


def report() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE) | {"external_id": uuid.uuid4().hex}


async def queue_depth(amqp: aio_pika.abc.AbstractRobustConnection, name: str) -> int:
    channel = await amqp.channel()
    queue = await channel.declare_queue(name, passive=True)
    count = queue.declaration_result.message_count or 0
    await channel.close()
    return count


async def test_intake_alone_declares_the_queue_its_events_must_reach(
    amqp_url: str, mongo_url: str, db_name: str, db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:  # fmt: skip
    token, _ = await issue_key(db)
    settings = IntakeSettings(**service_env(amqp_url, mongo_url, db_name))  # type: ignore[arg-type]
    async with running(build_intake(settings)) as intake:
        response = await intake.post("/v1/reports", json=report(), headers=bearer(token))
        assert response.status_code == 202

        async def waiting() -> int:
            return await queue_depth(amqp, MATCHING_REPORTED.queue)

        assert await wait_for(waiting) == 1, "no matching replica has ever run, yet it waits"
    channel = await amqp.channel()
    queue = await channel.get_queue(MATCHING_REPORTED.queue)
    message = await queue.get(no_ack=True)
    assert json.loads(message.body)["case_id"] == response.json()["case_id"]
    await channel.close()


async def test_a_full_queue_turns_into_503_and_no_accepted_report_is_lost(
    amqp_url: str, mongo_url: str, db_name: str, db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:  # fmt: skip
    token, _ = await issue_key(db)
    env = service_env(amqp_url, mongo_url, db_name) | {
        "QUEUE_MAX_LENGTH": "5",
        "SHED_FOR_S": "0.5",
        "OUTBOX_GRACE_S": "0",
        "OUTBOX_RELAY_INTERVAL_S": "0.2",
    }
    accepted: list[str] = []
    refused: list[dict[str, Any]] = []
    async with running(build_intake(IntakeSettings(**env))) as intake:  # type: ignore[arg-type]
        intake.headers.update(bearer(token))
        for _ in range(15):
            body = report()
            response = await intake.post("/v1/reports", json=body)
            if response.status_code == 503:
                assert int(response.headers["retry-after"]) >= 1
                assert "nothing was stored" in response.json()["message"]
                refused.append(body)
            else:
                assert response.status_code == 202
                accepted.append(response.json()["case_id"])
        assert refused, "a queue of 5 must refuse some of 15 reports"
        assert await queue_depth(amqp, MATCHING_REPORTED.queue) <= 6
        stored = {d["external_id"] async for d in db[CASES].find({}, {"external_id": 1})}
        assert not stored & {b["external_id"] for b in refused}, "a 503 stores nothing"
        assert len(stored) == len(accepted)

        # Drain as matching and notify would; everything accepted must arrive, once or more.
        channel = await amqp.channel()
        queue = await channel.get_queue(MATCHING_REPORTED.queue)
        also_bound = await channel.get_queue(NOTIFY_REPORTED.queue)
        delivered: set[str] = set()

        async def all_arrived() -> bool:
            while message := await queue.get(no_ack=True, fail=False):
                delivered.add(json.loads(message.body)["case_id"])
            await also_bound.purge()
            return delivered >= set(accepted)

        await wait_for(all_arrived, timeout=20)
        await channel.close()
        retry = report()

        async def taken_again() -> bool:  # as a hotline does, honouring Retry-After
            return (await intake.post("/v1/reports", json=retry)).status_code == 202

        assert await wait_for(taken_again, interval=0.5), "with room again, reports are taken"


async def test_a_message_that_always_fails_is_dead_lettered_while_healthy_ones_flow(
    amqp_url: str, mongo_url: str, db_name: str,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:  # fmt: skip
    settings = CommonSettings(**service_env(amqp_url, mongo_url, db_name) | {"DELIVERY_LIMIT": "3"})  # type: ignore[arg-type]
    broker = build_broker(settings, CollectorRegistry(), "poison-test")
    attempts: dict[str, int] = {}

    @broker.subscriber(work_queue(MATCHING_REPORTED, settings.queue_options), EVENTS)
    async def handle(body: dict[str, Any]) -> None:
        attempts[body["case_id"]] = attempts.get(body["case_id"], 0) + 1
        if body["case_id"] == "poison":
            raise RuntimeError("this message can never succeed")

    await broker.connect()
    await declare_topology(broker, settings.queue_options)
    await broker.start()
    try:
        channel = await amqp.channel()
        exchange = await channel.get_exchange(EVENTS.name)
        for case_id in ["poison", "ok-1", "ok-2", "ok-3"]:
            await exchange.publish(
                aio_pika.Message(json.dumps({"case_id": case_id}).encode()),
                routing_key=MATCHING_REPORTED.routing_key,
            )
        dlq = await channel.declare_queue(MATCHING_REPORTED.dead_letter_queue, passive=True)

        async def dead() -> aio_pika.abc.AbstractIncomingMessage | None:
            return await dlq.get(no_ack=True, fail=False)

        message = await wait_for(dead)
        assert json.loads(message.body) == {"case_id": "poison"}
        assert attempts["poison"] == 4, "the first delivery and DELIVERY_LIMIT=3 redeliveries"
        assert {attempts[f"ok-{i}"] for i in (1, 2, 3)} == {1}
        await channel.close()
    finally:
        await broker.stop()


async def test_matching_waits_out_a_database_outage_instead_of_dead_lettering(
    amqp_url: str, mongo_url: str, db_name: str, db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection, listener: EventListener,
) -> None:  # fmt: skip
    await listener.bind("case.*")
    volunteer = HelperRecord(
        id="v1", kind=HelperKind.volunteer, name="志愿者", lat=30.5801, lon=114.2734
    )
    await upsert_helpers(db, [volunteer], utcnow(), PERSON_SECRET)
    token, _ = await issue_key(db)
    mongo_port = mongo_url.rsplit(":", 1)[1].split("/")[0]
    proxy = await TcpProxy(int(mongo_port)).start()
    proxied = mongo_url.replace(f":{mongo_port}/", f":{proxy.port}/")
    env = service_env(amqp_url, proxied, db_name) | {"DELIVERY_LIMIT": "2"}
    intake_env = service_env(amqp_url, mongo_url, db_name) | {"DELIVERY_LIMIT": "2"}
    try:
        async with (
            running(build_matching(MatchingSettings(**env))) as matching,  # type: ignore[arg-type]
            running(build_intake(IntakeSettings(**intake_env))) as intake,  # type: ignore[arg-type]
        ):
            proxy.cut()
            response = await intake.post("/v1/reports", json=report(), headers=bearer(token))
            case_id = response.json()["case_id"]

            async def not_ready() -> dict[str, Any] | None:
                answer = await matching.get("/readyz")
                return answer.json() if answer.status_code == 503 else None

            assert (await wait_for(not_ready))["checks"]["database"] is False
            case = await db[CASES].find_one({"_id": case_id}, {"status": 1})
            assert case is not None and case["status"] == "received"
            proxy.restore()
            [assigned] = await listener.wait("case.assigned", case_id, timeout=30)
            assert assigned["helper"]["helper_id"] == "v1"
        assert await queue_depth(amqp, MATCHING_REPORTED.dead_letter_queue) == 0
    finally:
        await proxy.stop()
