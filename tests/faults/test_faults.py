"""Faults injected mid-stream; after each, every accepted report must be assigned or escalated
exactly once and told exactly once. `make test-faults` runs 1,000 reports per scenario;
`make test` runs the same scenarios shorter (FAULT_REPORTS)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.devstack import DevStack
from shared.embedded import free_port
from shared.storage import HELPERS, Document
from shared.topology import ALL_ROUTES, EVENTS
from tests.faults.broker import RabbitNode
from tests.faults.conftest import LEDGER
from tests.faults.ledger import CENTRE, DECIDED, Hotline, cases_of, reckon
from tests.proxy import TcpProxy
from tests.support import RecordingServer, bearer, wait_for

pytestmark = pytest.mark.faults

REPORTS = int(os.environ.get("FAULT_REPORTS", "150"))
RATE = float(os.environ.get("FAULT_RATE", "25"))
OUTAGE_S = 5.0
SERVICES = ("intake", "matching", "notify")
KM = 1 / 111.2


def registry() -> dict[str, object]:
    volunteers = [
        {
            "id": f"vol-{i:03d}",
            "kind": "volunteer",
            "name": f"志愿者{i}",
            "lat": CENTRE[0] + ((i % 8) - 4) * 0.5 * KM,
            "lon": CENTRE[1] + ((i // 8) - 4) * 0.5 * KM,
            "radius_km": 8,
            "capacity": 10_000,
        }
        for i in range(64)
    ]
    desk = {
        "id": "duty-desk",
        "kind": "duty_desk",
        "name": "武汉市残联值班室",
        "divisions": ["420100"],
        "capacity": 1_000_000,
    }
    return {"helpers": [*volunteers, desk]}


@dataclass
class Rig:
    """One scenario's system: the three services, behind proxies, on a fresh vhost and db."""

    stack: DevStack
    node: RabbitNode
    vhost: str
    amqp: TcpProxy
    mongo: TcpProxy
    db: AsyncDatabase[Document]
    wechat: RecordingServer
    captured: list[aio_pika.abc.AbstractIncomingMessage]

    async def restart(self, service: str, sig: int) -> int:
        code = await asyncio.to_thread(self.stack.stop_service, service, sig)
        await asyncio.to_thread(self.stack.start_service, service)
        await asyncio.to_thread(self.stack.wait_ready, service)
        return code

    async def direct_channel(self) -> aio_pika.abc.AbstractRobustConnection:
        return await aio_pika.connect_robust(self.node.url(self.vhost))


@pytest.fixture
async def rig(rabbit_node: RabbitNode, mongo_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    vhost = await asyncio.to_thread(rabbit_node.add_vhost)
    mongo_port = int(mongo_url.rsplit(":", 1)[1].split("/")[0])
    amqp = await TcpProxy(rabbit_node.port).start()
    mongo = await TcpProxy(mongo_port).start()
    db_name = f"faults_{uuid.uuid4().hex[:8]}"
    (tmp_path / "registry.json").write_text(json.dumps(registry(), ensure_ascii=False))
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    async with RecordingServer() as wechat:
        stack = DevStack(
            var_dir=tmp_path,
            registry_file=tmp_path / "registry.json",
            ports={"intake": free_port(), "matching": free_port(), "notify": free_port()},
            env={
                "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{amqp.port}/{vhost}",
                "MONGO_URL": mongo_url.replace(f":{mongo_port}/", f":{mongo.port}/"),
                "MONGO_DB": db_name,
                "CARERELAY_ENV": "test",
                "LOG_LEVEL": "WARNING",
                "WECHAT_WORK_WEBHOOK_URL": f"{wechat.url}/cgi-bin/webhook/send?key=team",
                "DUTY_DESK_WEBHOOK_URL": f"{wechat.url}/cgi-bin/webhook/send?key=duty",
                "RATE_LIMIT_PER_KEY": "100000/second",
                "OUTBOX_GRACE_S": "2",
                "CLAIM_RECONCILE_INTERVAL_S": "1",
                "CLAIM_RECONCILE_GRACE_S": "2",
            },
        )
        listening = await aio_pika.connect_robust(rabbit_node.url(vhost))
        try:
            await asyncio.to_thread(stack.start)
            captured = await capture(listening, "hardship.reported", "case.assigned")
            yield Rig(stack, rabbit_node, vhost, amqp, mongo, client[db_name], wechat, captured)
        finally:
            await listening.close()
            await asyncio.to_thread(stack.stop)
            await amqp.stop()
            await mongo.stop()
            await client.drop_database(db_name)
            await client.close()


async def capture(
    connection: aio_pika.abc.AbstractRobustConnection, *routing_keys: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Keep a copy of every event with these routing keys, as a wiretap on the exchange."""
    captured: list[aio_pika.abc.AbstractIncomingMessage] = []
    channel = await connection.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for key in routing_keys:
        await queue.bind(exchange, routing_key=key)

    async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        captured.append(message)

    await queue.consume(keep, no_ack=True)
    return captured


async def kill(rig: Rig, service: str) -> None:
    await rig.restart(service, signal.SIGKILL)


async def ready(rig: Rig, service: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"{rig.stack.url(service)}/readyz")).status_code == 200


async def restart_broker(rig: Rig) -> None:
    await asyncio.to_thread(rig.node.stop_app)
    for service in SERVICES:
        assert not await ready(rig, service), f"{service} claims ready without a broker"
    await asyncio.to_thread(rig.node.start_app)
    restarted = time.monotonic()

    def consumed() -> bool:  # counted by the broker, not assumed (aio-pika #231/#626)
        counts = rig.node.queue_consumers(rig.vhost)
        return all(counts.get(route.queue, 0) >= 1 for route in ALL_ROUTES)

    await wait_for(lambda: asyncio.to_thread(consumed), timeout=30, interval=0.5)
    assert time.monotonic() - restarted <= 10, "consumers took over 10 s to come back"
    for service in SERVICES:
        assert await wait_for(functools.partial(ready, rig, service), timeout=10)


async def cut_connections(rig: Rig) -> None:
    rig.amqp.cut()
    rig.mongo.cut()
    await asyncio.sleep(OUTAGE_S)  # the outage itself is the fault: it lasts this long
    rig.amqp.restore()
    rig.mongo.restore()


async def database_down(rig: Rig) -> None:
    rig.mongo.cut()
    await asyncio.sleep(OUTAGE_S)  # the outage itself is the fault
    rig.mongo.restore()


POISON = [b"not json at all", b'{"case_id": 42, "unexpected": true}', b"[]"]


async def poison_messages(rig: Rig) -> None:
    connection = await rig.direct_channel()
    channel = await connection.channel()
    for route in ALL_ROUTES:
        for body in POISON:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=route.queue,
            )

    def all_dead() -> bool:
        depths = rig.node.queue_depths(rig.vhost)
        return all(depths.get(r.dead_letter_queue, 0) >= len(POISON) for r in ALL_ROUTES)

    await wait_for(lambda: asyncio.to_thread(all_dead), timeout=30, interval=0.5)
    await connection.close()


async def deliver_twice(rig: Rig) -> None:
    """Every event published so far is delivered a second time, byte for byte."""
    connection = await rig.direct_channel()
    channel = await connection.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    seen = list(rig.captured)  # the wiretap also hears the copies
    for message in seen:
        await exchange.publish(
            aio_pika.Message(
                message.body,
                message_id=message.message_id,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=message.routing_key or "",
        )
    assert len(seen) >= REPORTS // 3
    await connection.close()


async def sigterm_each(rig: Rig) -> None:
    for service in ("matching", "notify", "intake"):
        code = await rig.restart(service, signal.SIGTERM)
        # uvicorn re-raises the signal after a graceful shutdown; a hang would end in SIGKILL
        assert code in (0, -signal.SIGTERM), f"{service} did not stop on SIGTERM (exit {code})"


Fault = Callable[[Rig], Awaitable[None]]
SCENARIOS: dict[str, Fault] = {
    "kill -9 intake": lambda rig: kill(rig, "intake"),
    "kill -9 matching": lambda rig: kill(rig, "matching"),
    "kill -9 notify": lambda rig: kill(rig, "notify"),
    "restart rabbitmq": restart_broker,
    "cut connections 5s": cut_connections,
    "poison messages": poison_messages,
    "database down 5s": database_down,
    "every event twice": deliver_twice,
    "sigterm under load": sigterm_each,
}


async def settle(rig: Rig, hotline: Hotline) -> None:
    """Wait until every accepted report is decided and its helper told (or give up)."""

    async def done() -> bool:
        cases = await cases_of(rig.db, set(hotline.accepted.values()))
        decided = [c for c in cases.values() if c["status"] in DECIDED]
        told = [c for c in decided if any(o.get("status") == "sent" for o in c.get("outreach", []))]
        assigned = sum(1 for c in cases.values() if c["status"] == "assigned")
        held = sum([int(h.get("load", 0)) async for h in rig.db[HELPERS].find({}, {"load": 1})])
        return len(told) == len(hotline.accepted) and held == assigned

    with contextlib.suppress(AssertionError):  # the reckoning says what is missing
        await wait_for(done, timeout=90, interval=0.5)


async def run_scenario(rig: Rig, name: str, fault: Fault) -> None:
    async with httpx.AsyncClient(
        base_url=rig.stack.url("intake"), headers=bearer(rig.stack.api_key), timeout=30
    ) as client:
        hotline = Hotline(client, REPORTS, RATE, seed=hash(name) % 1000)
        sending = asyncio.create_task(hotline.run())

        async def a_third_accepted() -> bool:
            return len(hotline.accepted) >= REPORTS // 3

        try:
            await wait_for(a_third_accepted, timeout=120)
            await fault(rig)
            fault_ended = time.time()
            await sending
        finally:
            sending.cancel()
        await settle(rig, hotline)
    result = await reckon(name, hotline, rig.db, rig.wechat.requests, fault_ended)
    LEDGER.append(result.line())
    print(result.line())
    assert result.accepted == REPORTS
    assert (result.lost, result.duplicated, result.leaked_claims) == (0, 0, 0), result.line()
    assert result.recovery_s <= 10.0 + OUTAGE_S, result.line()


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_no_report_is_lost_or_doubled_when(rig: Rig, name: str) -> None:
    await run_scenario(rig, name, SCENARIOS[name])
