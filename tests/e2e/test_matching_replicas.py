"""Three matching processes consume at once: 500 reports against 50 volunteers who can each
take two cases. Nobody is pushed past two, no case is assigned twice, every case ends up
assigned or escalated; every replica took part."""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import HardshipReport
from shared.devstack import DevStack
from shared.storage import CASES, HELPERS, Document
from tests.support import EventListener, free_ports, publish_reports, started_stack, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
HOME = (EXAMPLE["location"]["lat"], EXAMPLE["location"]["lon"])
REPORTS, VOLUNTEERS, CAPACITY = 500, 50, 2
REPLICAS = ("matching", "matching-2", "matching-3")

REGISTRY = {
    "helpers": [
        {
            "id": f"vol-{n:02d}",
            "kind": "volunteer",
            "name": f"志愿者{n}",
            "lat": HOME[0] + (n % 10) * 0.3 / 111.2,
            "lon": HOME[1] + (n // 10) * 0.3 / 96.0,
            "radius_km": 8,
            "capacity": CAPACITY,
        }
        for n in range(VOLUNTEERS)
    ]
    + [{"id": "desk", "kind": "duty_desk", "name": "值班室", "divisions": ["420100"]}]
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
        free_ports("intake", *REPLICAS),
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "MONGO_DB": db_name,
            "LOG_LEVEL": "WARNING",
        },
    ) as stack:
        yield stack


@pytest.fixture
async def db(mongo_url: str, db_name: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client[db_name]
    await client.close()


def report(n: int) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = f"WH-{uuid.uuid4().hex[:8]}-{n:03d}"
    body["person"]["phone"] = f"1380000{n:04d}"
    return body


async def test_three_replicas_never_overfill_a_volunteer_nor_assign_a_case_twice(
    stack: DevStack,
    db: AsyncDatabase[Document],
    amqp_url: str,
    listener: EventListener,
) -> None:
    await listener.bind("case.assigned")
    await publish_reports(amqp_url, [report(n) for n in range(REPORTS)])

    async def all_decided() -> bool:
        decided = {"status": {"$in": ["assigned", "escalated"]}}
        return await db[CASES].count_documents(decided) == REPORTS

    await wait_for(all_decided, timeout=240, interval=0.5)
    cases = [doc async for doc in db[CASES].find({}, {"status": 1, "offers": 1})]
    assert len(cases) == REPORTS
    assigned = {c["_id"]: c for c in cases if c["status"] == "assigned"}
    assert all(len(c["offers"]) == 1 for c in assigned.values())

    holders: Counter[str] = Counter()
    async for helper in db[HELPERS].find({"kind": "volunteer"}):
        assert helper["load"] == len(helper["case_ids"]) <= CAPACITY
        holders.update(helper["case_ids"])
        for case_id in helper["case_ids"]:
            assert assigned[case_id]["offers"][0]["helper_id"] == helper["_id"]
    assert set(holders) == set(assigned) and set(holders.values()) == {1}
    announced = Counter(body["case_id"] for body in listener.of("case.assigned"))
    assert set(announced) == set(assigned)
    ids = {(b["case_id"], b["event_id"]) for b in listener.of("case.assigned")}
    assert len(ids) == len(assigned)  # a repeat announcement (redelivery) reuses its event id

    async with httpx.AsyncClient(timeout=10) as client:
        metrics = [(await client.get(f"{stack.url(r)}/metrics")).text for r in REPLICAS]
    decided_by = [
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("carerelay_matching_decisions_total{")
        )
        for text in metrics
    ]
    assert sum(decided_by) >= REPORTS and all(n > 0 for n in decided_by)
