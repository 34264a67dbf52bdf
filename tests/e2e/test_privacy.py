"""PII canaries: reports whose names, phone numbers, ID and certificate numbers and addresses
are unique strings go through the whole system (offers, an acceptance, texts to the person and
their carer, hotline callbacks, a refused report, a poison message); afterwards none of those
strings may appear in any log, in the database's stored documents, in any event on the broker,
in any dead letter, in the metrics, or in what the operator's command line prints."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from pymongo import AsyncMongoClient

from shared.contracts import HardshipReport
from shared.devstack import DevStack
from shared.storage import Document
from shared.topology import ALL_ROUTES, EVENTS, INTAKE_REPORTS
from tests.support import Recorded, RecordingServer, bearer, free_ports, started_stack, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
RUN = uuid.uuid4().int % 10_000


CATEGORY_DIGIT = {"visual": 1, "hearing": 2, "intellectual": 5}


def canary_person(i: int, category: str) -> dict[str, Any]:
    birth = f"1956{(i % 12) + 1:02d}{(RUN % 28) + 1:02d}"
    return {
        "name": f"金丝雀{'甲乙丙丁'[i]}{RUN}",
        "phone": f"1398{RUN:04d}{i:03d}",
        "carer_phone": f"1378{RUN:04d}{i:03d}",
        "id_number": f"420103{birth}{i:03d}7",
        "certificate_number": f"420103{birth}{i:03d}7{CATEGORY_DIGIT.get(category, 4)}1",
        "disability": {"category": category, "grade": 2},
        "lives_alone": True,
        "household_disabled_count": 1,
        "low_income": True,
    }


def canary_report(i: int, category: str) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = f"CANARY-{RUN}-{i}"
    body["person"] = canary_person(i, category)
    body["location"]["address"] = f"湖北省武汉市江汉区金丝雀路{RUN}号{i}栋"
    body["description"] = f"独居，联系电话{body['person']['phone']}，需要买药。"
    return body


REPORTS = [
    canary_report(0, "intellectual"),
    canary_report(1, "hearing"),
    canary_report(2, "visual"),
]
REFUSED = canary_report(3, "physical") | {"need": "unicorns"}
CANARIES = sorted(
    {
        str(value)
        for body in [*REPORTS, REFUSED]
        for value in (
            body["person"]["name"],
            body["person"]["phone"],
            body["person"]["carer_phone"],
            body["person"]["id_number"],
            body["person"]["certificate_number"],
            body["location"]["address"],
        )
    }
)
REGISTRY = {
    "helpers": [
        {
            "id": "vol-near",
            "kind": "volunteer",
            "name": "李红",
            "lat": EXAMPLE["location"]["lat"] + 0.004,
            "lon": EXAMPLE["location"]["lon"],
            "radius_km": 5,
            "capacity": 10,
            "contact": {"phone": "13900001111"},
        },
        {
            "id": "duty-desk-wuhan",
            "kind": "duty_desk",
            "name": "武汉市残联值班室",
            "divisions": ["420100"],
            "capacity": 100000,
        },
    ]
}
EVENT_KEYS = ("hardship.#", "case.#", "outreach.#", "offer.#", "resolution.#", "registry.#")


def leaks(text: str) -> list[str]:
    return [canary for canary in CANARIES if canary in text]


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[dict[str, RecordingServer]]:
    def gateway(_: Recorded) -> tuple[int, dict[str, Any]]:
        return 200, {"message_id": uuid.uuid4().hex}

    async with (
        RecordingServer() as wechat,
        RecordingServer(gateway) as sms,
        RecordingServer(lambda _: (204, {})) as hotline,
        RecordingServer(lambda _: (202, {})) as calls,
    ):
        yield {"wechat": wechat, "sms": sms, "hotline": hotline, "calls": calls}


@pytest.fixture(scope="module")
def stack(
    amqp_url: str,
    mongo_url: str,
    servers: dict[str, RecordingServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DevStack]:
    ports = free_ports("intake", "matching", "notify")
    callbacks = {EXAMPLE["source"]: {"url": f"{servers['hotline'].url}/cb", "secret": "whsec_"
                 "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}  # fmt: skip
    with started_stack(
        tmp_path_factory.mktemp("var"),
        REGISTRY,
        ports,
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "MONGO_DB": f"privacy_{uuid.uuid4().hex[:8]}",
            "LOG_LEVEL": "INFO",  # what production runs
            "MATCHING_PUBLIC_URL": f"http://127.0.0.1:{ports['matching']}",
            "WECHAT_WORK_WEBHOOK_URL": f"{servers['wechat'].url}/cgi-bin/webhook/send?key=team",
            "SMS_PROVIDER": "generic",
            "SMS_GATEWAY_URL": f"{servers['sms'].url}/v1/sms",
            "CALL_CENTRE_URL": f"{servers['calls'].url}/v1/call-tasks",
            "HOTLINE_CALLBACKS": json.dumps(callbacks),
        },
    ) as stack:
        yield stack


def logs_leaks(log_dir: Path) -> dict[str, list[str]]:
    return {
        f"log {log.name}": leaks(log.read_text(encoding="utf-8", errors="replace"))
        for log in sorted(log_dir.glob("*.log"))
    }


async def wiretap(url: str) -> tuple[aio_pika.abc.AbstractRobustConnection, list[str]]:
    """Every event on the exchange, as raw body, headers and routing key."""
    heard: list[str] = []
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for key in EVENT_KEYS:
        await queue.bind(exchange, routing_key=key)

    async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        heard.append(
            f"{message.routing_key} {json.dumps(message.headers, default=str, ensure_ascii=False)}"
            f" {message.body.decode(errors='replace')}"
        )

    await queue.consume(keep, no_ack=True)
    return connection, heard


async def test_no_canary_leaks_anywhere_after_a_full_run(
    stack: DevStack, servers: dict[str, RecordingServer], amqp_url: str, mongo_url: str
) -> None:
    connection, heard = await wiretap(amqp_url)
    async with httpx.AsyncClient(
        base_url=stack.url("intake"), headers=bearer(stack.api_key), timeout=10
    ) as intake:
        refused = await intake.post("/v1/reports", json=REFUSED)
        assert refused.status_code == 422
        case_ids = [
            (await intake.post("/v1/reports", json=body)).json()["case_id"] for body in REPORTS
        ]
        # A poison report over AMQP (valid JSON, invalid report) is dead-lettered and logged.
        channel = await connection.channel()
        await (await channel.get_exchange(EVENTS.name)).publish(
            aio_pika.Message(json.dumps(REFUSED, ensure_ascii=False).encode()),
            routing_key=INTAKE_REPORTS.routing_key,
        )

        async def offers() -> list[str] | None:
            texts = [r.json()[r.json()["msgtype"]]["content"] for r in servers["wechat"].requests]
            links = [
                found.group()
                for text in texts
                if (found := re.search(r"https?://\S+/v1/offers/[\w.-]+", text))
            ]
            return links if len(links) >= len(REPORTS) else None

        for link in await wait_for(offers, timeout=30):
            answer = await intake.post(f"{link}/accept")
            assert answer.status_code == 200, "the helper who accepts sees address and number"

        async def texted() -> bool:  # the carer of the intellectual-disability case, the others
            numbers = {json.loads(r.body)["to"] for r in servers["sms"].requests}
            wanted = {"+86" + REPORTS[0]["person"]["carer_phone"],
                      "+86" + REPORTS[1]["person"]["phone"]}  # fmt: skip
            return wanted <= numbers

        await wait_for(texted, timeout=30)
        for case_id in case_ids:
            await intake.get(f"/v1/cases/{case_id}")
    await asyncio.to_thread(stack.cli, "dlq", "list")  # the operator looks at the dead letters

    found = await asyncio.to_thread(logs_leaks, stack.log_dir)
    found["cli dlq list"] = leaks(await asyncio.to_thread(stack.cli, "dlq", "list"))
    found["cli outreach failed"] = leaks(await asyncio.to_thread(stack.cli, "outreach", "failed"))
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[stack.env["MONGO_DB"]]
    for name in await db.list_collection_names():
        stored = [doc async for doc in db[name].find({})]
        found[f"db {name}"] = leaks(json.dumps(stored, default=str, ensure_ascii=False))
    await client.close()
    found["events on the broker"] = leaks("\n".join(heard))
    channel = await connection.channel()
    poisoned = ""
    for route in ALL_ROUTES:
        queue = await channel.declare_queue(route.dead_letter_queue, passive=True)
        while message := await queue.get(no_ack=True, fail=False):
            body = message.body.decode(errors="replace")
            if route is INTAKE_REPORTS:  # a hotline's own AMQP input: the report, by definition
                poisoned += body
            else:
                found[f"dlq {route.queue}"] = leaks(body)
    async with httpx.AsyncClient() as http:
        for service in ("intake", "matching", "notify"):
            metrics = (await http.get(f"{stack.url(service)}/metrics")).text
            found[f"metrics {service}"] = leaks(metrics)
    await connection.close()

    # Controls: the canaries did flow where they must (the sends themselves, the hotline's own
    # dead-lettered AMQP input), so finding none elsewhere means something.
    assert len(heard) >= 3 * len(REPORTS), "the wiretap heard the run"
    sent = json.dumps([r.json() for r in servers["sms"].requests], ensure_ascii=False)
    assert REPORTS[0]["location"]["address"] in sent, "the helper who accepted got the details"
    assert poisoned and leaks(poisoned), "the poison report is in its dead-letter queue"
    assert {where: hits for where, hits in found.items() if hits} == {}
