"""Fewer database round trips, same guarantees: against a real MongoDB-wire server, with the
commands counted by the same listener `make bench` uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.matching.repository import Claim, MongoHelperStore
from shared.contracts import utcnow
from shared.outbox import OUTBOX, OUTBOX_AT, Flush, Outbox
from shared.service import Periodic
from shared.settings import CommonSettings
from shared.storage import CASES, HELPERS, Document, mongo_client
from tests.support import wait_for


@pytest.fixture
async def counted(
    mongo_url: str, db_name: str, db: AsyncDatabase[Document]
) -> AsyncIterator[tuple[AsyncDatabase[Document], CollectorRegistry]]:
    """The same database through a client whose commands are counted (BENCH_COUNT_COMMANDS)."""
    registry = CollectorRegistry()
    settings = CommonSettings(MONGO_URL=mongo_url, BENCH_COUNT_COMMANDS="1")
    client: AsyncMongoClient[Document] = mongo_client(settings, registry)
    yield client[db_name], registry
    await client.close()


def commands(registry: CollectorRegistry, command: str, origin: str = "handler") -> float:
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "carerelay_db_commands_total" and labels["command"] == command:
                total += sample.value if labels["origin"] == origin else 0.0
    return total


async def test_published_outbox_marks_are_cleared_together_in_one_write(
    counted: tuple[AsyncDatabase[Document], CollectorRegistry],
) -> None:
    db, registry = counted
    stamp = utcnow()
    await db[CASES].insert_many(
        [
            {"_id": f"c{i}", OUTBOX: [{"routing_key": "k", "body": {}}], OUTBOX_AT: stamp}
            for i in range(3)
        ]
    )
    published: list[str] = []

    async def publish(routing_key: str, body: dict[str, Any]) -> None:
        published.append(routing_key)

    outbox = Outbox(db[CASES], publish, clear_every_s=60)
    await outbox.start()
    updates_before = commands(registry, "update")
    for i in range(3):
        assert (
            await outbox.flush(f"c{i}", [{"routing_key": "k", "body": {}}], stamp)
            is Flush.published
        )
    # A newer change queued its own event on c2 meanwhile: its mark must stay.
    later = stamp + timedelta(seconds=1)
    await db[CASES].update_one({"_id": "c2"}, {"$set": {OUTBOX_AT: later}})
    assert await db[CASES].count_documents({OUTBOX: {"$exists": True}}) == 3, "not yet cleared"
    await outbox.stop()  # clears what is pending
    assert published == ["k", "k", "k"]
    assert {d["_id"] async for d in db[CASES].find({OUTBOX: {"$exists": True}})} == {"c2"}
    assert commands(registry, "update") - updates_before == 2, "one bulk write, plus our own"


async def test_an_outbox_without_batching_clears_each_mark_at_once(
    db: AsyncDatabase[Document],
) -> None:
    stamp = utcnow()
    await db[CASES].insert_one(
        {"_id": "c", OUTBOX: [{"routing_key": "k", "body": {}}], OUTBOX_AT: stamp}
    )

    async def publish(routing_key: str, body: dict[str, Any]) -> None:
        return None

    await Outbox(db[CASES], publish).flush("c", [{"routing_key": "k", "body": {}}], stamp)
    assert await db[CASES].count_documents({OUTBOX: {"$exists": True}}) == 0


async def test_the_relay_leaves_events_in_flight_and_other_services_events_alone(
    db: AsyncDatabase[Document],
) -> None:
    stamp = utcnow()
    await db[CASES].insert_many(
        [
            {"_id": "slow", OUTBOX: [{"routing_key": "mine", "body": {}}], OUTBOX_AT: stamp},
            {"_id": "theirs", OUTBOX: [{"routing_key": "theirs", "body": {}}], OUTBOX_AT: stamp},
        ]
    )
    published: list[str] = []
    sent, confirmed = asyncio.Event(), asyncio.Event()

    async def publish(routing_key: str, body: dict[str, Any]) -> None:
        published.append(routing_key)
        sent.set()
        await confirmed.wait()  # a broker slow to confirm, past the relay's grace

    outbox = Outbox(db[CASES], publish, routing_keys=["mine"])
    flushing = asyncio.create_task(
        outbox.flush("slow", [{"routing_key": "mine", "body": {}}], stamp)
    )
    await sent.wait()
    relayed = await outbox.relay(older_than=utcnow() + timedelta(seconds=1))
    assert sum(relayed.values()) == 0, "in flight here, and another service's event"
    confirmed.set()
    assert await flushing is Flush.published
    assert published == ["mine"]
    left = {d["_id"] async for d in db[CASES].find({OUTBOX: {"$exists": True}})}
    assert left == {"theirs"}, "its own relay will publish it"


async def test_a_claim_takes_spare_capacity_once_and_refuses_a_full_or_changed_helper(
    db: AsyncDatabase[Document],
) -> None:
    await db[HELPERS].insert_one(
        {"_id": "v", "active": True, "capacity": 2, "load": 0, "case_ids": [], "offers": 0}
    )
    helpers = MongoHelperStore(db)
    assert await helpers.claim("v", "case-1", capacity=2) is Claim.taken
    assert await helpers.claim("v", "case-1", capacity=2) is Claim.already_held
    assert await helpers.claim("v", "case-2", capacity=3) is Claim.refused, "capacity changed"
    assert await helpers.claim("v", "case-2", capacity=2) is Claim.taken
    assert await helpers.claim("v", "case-3", capacity=2) is Claim.refused, "full"
    helper = await db[HELPERS].find_one({"_id": "v"})
    assert helper is not None and helper["load"] == 2 and helper["case_ids"] == ["case-1", "case-2"]


async def test_commands_from_background_loops_are_counted_apart_from_handlers(
    counted: tuple[AsyncDatabase[Document], CollectorRegistry],
) -> None:
    db, registry = counted
    passes: list[int] = []

    async def sweep() -> None:
        await db[CASES].find_one({"_id": "nobody"})
        passes.append(1)

    loop = Periodic("sweep", 0.01, sweep)
    await loop.start()

    async def swept() -> bool:
        return bool(passes)

    await wait_for(swept)
    await loop.stop()
    await db[CASES].find_one({"_id": "handled"})
    # The pass stopped mid-way (cancelled after its find, before counting) may add one.
    assert len(passes) <= commands(registry, "find", "periodic") <= len(passes) + 1
    assert commands(registry, "find", "handler") == 1
