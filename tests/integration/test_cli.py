"""The operator's command line against the real broker and database: keys and dead letters."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import build_app
from services.intake.settings import IntakeSettings
from shared.contracts import HardshipReport
from shared.storage import API_KEYS, CASES, Document
from shared.topology import INTAKE_REPORTS
from tests.support import bearer, running, service_env, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]


def carerelay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "shared.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def intake(amqp_url: str, mongo_url: str, db_name: str) -> AsyncIterator[httpx.AsyncClient]:
    env = service_env(amqp_url, mongo_url, db_name) | {"API_KEY_CACHE_S": "0"}
    async with running(build_app(IntakeSettings(**env))) as client:  # type: ignore[arg-type]
        yield client


async def test_a_key_is_created_listed_used_and_revoked_from_the_command_line(
    intake: httpx.AsyncClient, amqp_url: str, mongo_url: str, db_name: str,
    db: AsyncDatabase[Document],
) -> None:  # fmt: skip
    env = service_env(amqp_url, mongo_url, db_name) | {"API_KEY_CACHE_S": "0"}
    created = carerelay(
        env, "keys", "create", "--name", "武汉12345", "--source", "12345-wuhan",
        "--division", "420100",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.split("api key:")[1].split()[0]
    key_id = token.split("_")[1]
    stored = await db[API_KEYS].find_one({"_id": key_id})
    assert stored is not None and token.split("_", 2)[2] not in json.dumps(stored, default=str)

    listing = carerelay(env, "keys", "list")
    assert key_id in listing.stdout and "420100" in listing.stdout and "active" in listing.stdout
    assert token not in listing.stdout

    body = copy.deepcopy(EXAMPLE) | {"external_id": uuid.uuid4().hex}
    assert (await intake.post("/v1/reports", json=body, headers=bearer(token))).status_code == 202
    assert carerelay(env, "keys", "revoke", key_id).returncode == 0
    body["external_id"] = uuid.uuid4().hex
    assert (await intake.post("/v1/reports", json=body, headers=bearer(token))).status_code == 401
    assert "revoked" in carerelay(env, "keys", "list").stdout


def test_a_key_needs_a_division_and_the_error_says_so(
    amqp_url: str, mongo_url: str, db_name: str
) -> None:
    env = service_env(amqp_url, mongo_url, db_name)
    done = carerelay(env, "keys", "create", "--name", "x", "--source", "12345-wuhan")
    assert done.returncode == 2 and "division" in done.stderr


async def test_dead_letters_are_listed_without_their_bodies_and_replayed_to_work(
    intake: httpx.AsyncClient, amqp_url: str, mongo_url: str, db_name: str,
    db: AsyncDatabase[Document], amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:  # fmt: skip
    env = service_env(amqp_url, mongo_url, db_name)
    body = copy.deepcopy(EXAMPLE) | {"external_id": "DLQ-1"}
    channel = await amqp.channel()
    # As the broker leaves a report that exhausted its deliveries while the store was down.
    await channel.default_exchange.publish(
        aio_pika.Message(
            json.dumps(body).encode(),
            message_id="m-1",
            headers={
                "x-death": [
                    {
                        "count": 6,
                        "reason": "delivery_limit",
                        "queue": INTAKE_REPORTS.queue,
                        "exchange": "carerelay.events",
                        "routing-keys": [INTAKE_REPORTS.routing_key],
                    }
                ]
            },
        ),
        routing_key=INTAKE_REPORTS.dead_letter_queue,
    )
    listing = carerelay(env, "dlq", "list")
    assert listing.returncode == 0, listing.stderr
    [line] = [row for row in listing.stdout.splitlines() if "m-1" in row]
    assert line.split("\t")[:5] == [
        INTAKE_REPORTS.dead_letter_queue, "m-1", "report.submitted", "delivery_limit", "x6",
    ]  # fmt: skip
    assert "张秀英" not in listing.stdout and "13800138000" not in listing.stdout

    replayed = carerelay(env, "dlq", "replay", INTAKE_REPORTS.dead_letter_queue)
    assert "replayed 1" in replayed.stdout

    async def case_created() -> Document | None:
        return await db[CASES].find_one({"external_id": "DLQ-1"})

    assert (await wait_for(case_created))["created_by"] == "amqp"
    dlq = await channel.declare_queue(INTAKE_REPORTS.dead_letter_queue, passive=True)
    assert dlq.declaration_result.message_count == 0
    await channel.close()
