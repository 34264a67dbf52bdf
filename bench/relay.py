"""Benchmark: one relay hop, our stack against plain aio-pika, on the same broker.

A hop is what every CareRelay consumer does around its own work: consume an event, validate it
(pydantic, `HardshipReported`), publish it on (persistent, publisher-confirmed) and acknowledge
the original. Built twice: with the project's own stack (`shared.messaging.build_broker`:
FastStream with its OpenTelemetry, Prometheus, case-context, reject-invalid and retry
middlewares, as every service runs it, and `publish_event`) and in plain aio-pika. Both run
against the same quorum work queue (as `shared.topology.work_queue` declares it), with the
same prefetch, in a RabbitMQ virtual host of our own; the queue is filled first, then drained
by one and then the other, twice, and each side's best pass is kept.

    .venv/bin/python -m bench.relay [--messages 3000]   # writes bench/results/relay.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.rabbit.schemas import Channel
from prometheus_client import CollectorRegistry

from bench.common import RESULTS, virtual_host
from shared.contracts import CaseFacts, DisabilityCategory, HardshipReported, Need, Urgency, utcnow
from shared.messaging import (
    CaseContext,
    RejectInvalidMessages,
    build_broker,
    publish_event,
    retry_transient_errors,
)
from shared.service import configure_logging
from shared.settings import CommonSettings
from shared.telemetry import configure_tracing
from shared.topology import EVENTS, Route, work_queue

HOP_IN = Route("bench.relay-in", "bench.relay.in")
HOP_OUT = Route("bench.relay-out", HardshipReported.routing_key)


def event(i: int) -> HardshipReported:
    now = utcnow()
    return HardshipReported(
        case_id=f"{i:032x}",
        source="12345-wuhan",
        external_id=f"RELAY-{i:06d}",
        facts=CaseFacts(
            source="12345-wuhan",
            external_id=f"RELAY-{i:06d}",
            need=Need.medicine,
            urgency=Urgency.immediate,
            disability_category=DisabilityCategory.visual,
            disability_grade=1,
            lives_alone=True,
            household_disabled_count=1,
            low_income=True,
            has_carer=False,
            lat=30.58,
            lon=114.27,
            division_code="420103",
            reported_at=now,
            received_at=now,
            person_key=f"{i:064x}",
        ),
    )


async def declare(channel: aio_pika.abc.AbstractChannel) -> None:
    """The exchange and both queues, with the arguments the services' work queues have."""
    exchange = await channel.declare_exchange(
        EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    for route in (HOP_IN, HOP_OUT):
        spec = work_queue(route)
        queue = await channel.declare_queue(route.queue, durable=True, arguments=spec.arguments)
        await queue.bind(exchange, routing_key=route.routing_key)


async def fill(connection: aio_pika.abc.AbstractRobustConnection, count: int) -> None:
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS.name)
    for out in ("bench.relay-out",):
        await (await channel.get_queue(out)).purge()
    bodies = [event(i).model_dump_json().encode() for i in range(count)]
    for start in range(0, count, 200):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=HOP_IN.routing_key,
                )
                for body in bodies[start : start + 200]
            )
        )
    await channel.close()


Drain = Callable[[str, int], Awaitable[float]]


def variant(settings: CommonSettings, layers: str) -> RabbitBroker:
    """Our broker with only some middlewares, to see what each layer costs: "none" is bare
    FastStream; "no-telemetry" is everything but OpenTelemetry."""
    middlewares: list[Any] = []
    if layers == "no-telemetry":
        middlewares = [
            RabbitPrometheusMiddleware(registry=CollectorRegistry(), app_name="bench-relay"),
            CaseContext,
            RejectInvalidMessages,
            retry_transient_errors(settings.transient_retry_s),
        ]
    return RabbitBroker(
        settings.amqp_url,
        default_channel=Channel(prefetch_count=settings.prefetch, publisher_confirms=True),
        logger=logging.getLogger("carerelay.bench-relay.broker"),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        middlewares=tuple(middlewares),
    )


async def ours(amqp_url: str, count: int, layers: str = "all") -> float:
    """The hop on our stack; seconds from the first message to the last one passed on."""
    settings = CommonSettings(AMQP_URL=amqp_url)
    if layers == "all":
        broker = build_broker(settings, CollectorRegistry(), "bench-relay")
    else:
        broker = variant(settings, layers)
    done = asyncio.Event()
    seen: list[float] = []

    @broker.subscriber(work_queue(HOP_IN, settings.queue_options), EVENTS)
    async def hop(incoming: HardshipReported) -> None:
        await publish_event(broker, incoming)
        seen.append(time.perf_counter())
        if len(seen) >= count:
            done.set()

    await broker.start()
    started = time.perf_counter()
    await asyncio.wait_for(done.wait(), timeout=300)
    await broker.stop()
    return seen[count - 1] - started


async def raw(amqp_url: str, count: int) -> float:
    """The same hop in plain aio-pika."""
    settings = CommonSettings(AMQP_URL=amqp_url)
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=settings.prefetch)
    exchange = await channel.get_exchange(EVENTS.name)
    queue = await channel.get_queue(HOP_IN.queue)
    done = asyncio.Event()
    seen: list[float] = []

    async def hop(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        incoming = HardshipReported.model_validate_json(message.body)
        await exchange.publish(
            aio_pika.Message(
                incoming.model_dump_json().encode(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=incoming.event_id,
                type=incoming.routing_key,
                content_type="application/json",
            ),
            routing_key=incoming.routing_key,
        )
        await message.ack()
        seen.append(time.perf_counter())
        if len(seen) >= count:
            done.set()

    started = time.perf_counter()
    tag = await queue.consume(hop)
    await asyncio.wait_for(done.wait(), timeout=300)
    await queue.cancel(tag)
    await connection.close()
    return seen[count - 1] - started


async def measure(amqp_url: str, count: int, rounds: int = 2) -> dict[str, Any]:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    await declare(channel)
    passes: dict[str, list[float]] = {"ours": [], "raw": [], "ours_info_logging": []}
    runs: list[tuple[str, Callable[[str, int], Awaitable[float]]]] = [("ours", ours), ("raw", raw)]
    for _ in range(rounds):
        for name, hop in runs:
            await fill(connection, count)
            seconds = await hop(amqp_url, count)
            passes[name].append(round(count / seconds, 1))
    for layers in ("no-telemetry", "none"):
        await fill(connection, count)
        passes[f"ours_{layers}"] = [round(count / await ours(amqp_url, count, layers), 1)]
    # Production's default LOG_LEVEL=INFO: FastStream logs every message received and processed
    # (kept in memory here; a terminal or a container's log driver costs more).
    with contextlib.redirect_stderr(io.StringIO()):
        configure_logging("INFO", "bench-relay")
        await fill(connection, count)
        passes["ours_info_logging"].append(round(count / await ours(amqp_url, count), 1))
    configure_logging("WARNING", "bench-relay")
    await channel.close()
    await connection.close()
    best_ours, best_raw = max(passes["ours"]), max(passes["raw"])
    return {
        "messages": count,
        "ours_per_s": best_ours,
        "raw_per_s": best_raw,
        "ratio": round(best_ours / best_raw, 3),
        "ours_with_info_logging_per_s": passes["ours_info_logging"][0],
        "ours_without_telemetry_per_s": passes["ours_no-telemetry"][0],
        "faststream_without_middlewares_per_s": passes["ours_none"][0],
        "passes": passes,
        "log_level": "WARNING (as the pipeline runs); INFO shown apart",
    }


def run(count: int) -> dict[str, Any]:
    configure_logging("WARNING", "bench-relay")
    configure_tracing("bench-relay")
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    with virtual_host("carerelay-bench-relay") as amqp_url:
        return asyncio.run(measure(amqp_url, count))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=RESULTS / "relay.json")
    args = parser.parse_args(argv)
    result = run(args.messages)
    print(
        f"relay hop: ours {result['ours_per_s']}/s, raw aio-pika {result['raw_per_s']}/s, "
        f"ratio {result['ratio']} "
        f"(without OpenTelemetry {result['ours_without_telemetry_per_s']}/s, "
        f"bare FastStream {result['faststream_without_middlewares_per_s']}/s, "
        f"at LOG_LEVEL=INFO {result['ours_with_info_logging_per_s']}/s)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
