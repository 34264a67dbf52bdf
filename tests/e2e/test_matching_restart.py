"""An open offer's timer lives in the database, not in the process: the matching process is
killed while an offer is open, the acknowledgement window passes while it is down, and the
restarted process times the offer out and asks the next volunteer."""

from __future__ import annotations

import copy
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import HardshipReport, utcnow
from shared.devstack import DevStack
from shared.storage import CASES, Document
from tests.support import free_ports, publish_reports, started_stack, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
HOME = (EXAMPLE["location"]["lat"], EXAMPLE["location"]["lon"])


def volunteer(id: str, km_north: float) -> dict[str, Any]:
    return {
        "id": id,
        "kind": "volunteer",
        "name": id,
        "lat": HOME[0] + km_north / 111.2,
        "lon": HOME[1],
        "radius_km": 5,
        "capacity": 2,
    }


REGISTRY = {
    "helpers": [
        volunteer("near", 0.5),
        volunteer("next", 1.5),
        {"id": "desk", "kind": "duty_desk", "name": "值班室", "divisions": ["420100"]},
    ]
}


@pytest.fixture(scope="module")
def db_name() -> str:
    return f"e2e_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def stack(
    amqp_url: str, mongo_url: str, db_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    with started_stack(
        tmp_path_factory.mktemp("var"),
        REGISTRY,
        free_ports("intake", "matching"),
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "MONGO_DB": db_name,
            "ACK_WINDOW_SCALE": "0.005",  # a P1 case's 10 minutes become 3 seconds
            "OFFER_SWEEP_INTERVAL_S": "0.2",
        },
    ) as stack:
        yield stack


@pytest.fixture
async def db(mongo_url: str, db_name: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client[db_name]
    await client.close()


async def test_an_open_offer_times_out_after_the_matching_process_restarts(
    stack: DevStack, db: AsyncDatabase[Document], amqp_url: str
) -> None:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = uuid.uuid4().hex
    await publish_reports(amqp_url, [body])

    async def offered() -> Document | None:
        case = await db[CASES].find_one({"external_id": body["external_id"]})
        return case if case and case["status"] == "assigned" else None

    case = await wait_for(offered, timeout=30)
    [offer] = case["offers"]
    assert offer["helper_id"] == "near" and offer["outcome"] is None

    assert stack.stop_service("matching", signal.SIGKILL) == -signal.SIGKILL

    async def window_passed() -> bool:
        return bool(utcnow() > offer["ack_due"])

    await wait_for(window_passed, timeout=30)
    still = await db[CASES].find_one({"_id": case["_id"]})
    assert still is not None and still["offers"][0]["outcome"] is None  # nobody to time it out

    restarted_at: datetime = utcnow()
    stack.restart_service("matching")

    async def timed_out() -> Document | None:
        doc = await db[CASES].find_one({"_id": case["_id"]})
        return doc if doc and len(doc["offers"]) == 2 else None

    after = await wait_for(timed_out, timeout=30)
    first, second = after["offers"]
    assert first["outcome"] == "timeout" and first["answered_at"] >= restarted_at
    assert second["helper_id"] == "next" and second["outcome"] is None
    assert [t["status"] for t in after["timeline"]] == [
        "received",
        "assigned",
        "declined",
        "assigned",
    ]
