"""The whole system as `make run` starts it: three OS processes, real RabbitMQ, a real
MongoDB-wire server, a real HTTP server standing in for WeChat Work; reports posted over HTTP."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.contracts import HardshipReport
from shared.devstack import DevStack
from tests.support import RecordingServer, bearer, free_ports, started_stack, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
HOME = (30.5801, 114.2734)  # 江汉区, division 420103
KM = 1 / 111.2


def volunteer(id: str, km_north: float, capacity: int) -> dict[str, Any]:
    return {
        "id": id,
        "kind": "volunteer",
        "name": f"志愿者{id}",
        "lat": HOME[0] + km_north * KM,
        "lon": HOME[1],
        "radius_km": 5,
        "capacity": capacity,
        "contact": {"phone": "13900000000"},
    }


REGISTRY = {
    "helpers": [
        volunteer("vol-near", 0.5, 2),
        volunteer("vol-mid", 1.5, 3),
        *[volunteer(f"vol-{i:02d}", 2.0 + i * 0.1, 2) for i in range(10)],
        {
            "id": "mzj-jianghan",
            "kind": "agency",
            "name": "江汉区民政局",
            "divisions": ["420103"],
            "needs": ["benefits", "housing"],
            "capacity": 1000,
            "contact": {"email": "mzj@example.gov.cn"},
        },
        {
            "id": "mzj-wuchang",
            "kind": "agency",
            "name": "武昌区民政局",
            "divisions": ["420106"],
            "needs": ["benefits", "housing"],
            "capacity": 1000,
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


def report(need: str = "medicine", lat: float = HOME[0], **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body.update(external_id=uuid.uuid4().hex, need=need, **changes)
    body["location"]["lat"] = lat
    body["person"]["disability"] = {"category": "physical", "grade": 3}
    return body


@pytest.fixture(scope="module")
async def wechat() -> AsyncIterator[RecordingServer]:
    async with RecordingServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    amqp_url: str, mongo_url: str, wechat: RecordingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    with started_stack(
        tmp_path_factory.mktemp("var"),
        REGISTRY,
        free_ports("intake", "matching", "notify"),
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "MONGO_DB": f"e2e_{uuid.uuid4().hex[:8]}",
            # Fifty reports at once and their status polls outrun the default 100/s per key.
            "RATE_LIMIT_PER_KEY": "10000/second",
            "WECHAT_WORK_WEBHOOK_URL": f"{wechat.url}/cgi-bin/webhook/send?key=team",
        },
    ) as stack:
        yield stack


@pytest.fixture
async def intake(stack: DevStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url("intake"), timeout=10, headers=bearer(stack.api_key)
    ) as client:
        yield client


async def settled(intake: httpx.AsyncClient, case_id: str, outreach: bool = True) -> dict[str, Any]:
    async def decided() -> dict[str, Any] | None:
        response = await intake.get(f"/v1/cases/{case_id}")
        assert response.status_code == 200, response.text
        case: dict[str, Any] = response.json()
        done = case["status"] in ("assigned", "escalated")
        return case if done and (not outreach or case["outreach"]) else None

    return await wait_for(decided, timeout=20)


async def test_report_is_assigned_to_the_nearest_volunteer_and_the_helper_is_told(
    intake: httpx.AsyncClient, wechat: RecordingServer
) -> None:
    response = await intake.post("/v1/reports", json=report())
    assert response.status_code == 202
    case = await settled(intake, response.json()["case_id"])
    assert case["status"] == "assigned"
    assert case["assignment"]["helper_id"] == "vol-near"
    assert case["assignment"]["distance_km"] == pytest.approx(0.5, abs=0.01)
    assert [t["status"] for t in case["timeline"]] == ["received", "assigned"]
    assert case["decision"]["candidates"][0]["helper_id"] == "vol-near"
    assert case["offers"][0]["helper_id"] == "vol-near" and case["offers"][0]["outcome"] is None
    assert case["triage"]["priority"] in ("P1", "P2") and case["triage"]["first_contact_due"]

    async def told() -> bool:
        return any(case["case_id"] in r.json()["text"]["content"] for r in wechat.requests)

    await wait_for(told)
    assert case["outreach"][0]["channel"] == "wechat_work"


async def test_subsidy_request_goes_to_the_civil_affairs_agency_of_that_division(
    intake: httpx.AsyncClient,
) -> None:
    response = await intake.post("/v1/reports", json=report(need="benefits"))
    case = await settled(intake, response.json()["case_id"])
    assert case["status"] == "assigned"
    assert case["assignment"] == {
        "helper_id": "mzj-jianghan",
        "kind": "agency",
        "name": "江汉区民政局",
        "distance_km": None,
    }


async def test_report_with_no_helper_in_range_is_escalated_to_the_duty_desk(
    intake: httpx.AsyncClient,
    wechat: RecordingServer,
) -> None:
    response = await intake.post("/v1/reports", json=report(lat=HOME[0] + 0.5))
    case = await settled(intake, response.json()["case_id"])
    assert case["status"] == "escalated"
    assert case["assignment"]["helper_id"] == "duty-desk-wuhan"
    assert case["timeline"][-1]["reason"] == "no_eligible_helper"


async def test_duplicate_post_returns_the_same_case(intake: httpx.AsyncClient) -> None:
    body = report()
    first = await intake.post("/v1/reports", json=body)
    second = await intake.post("/v1/reports", json=body)
    assert second.status_code == 200
    assert second.json()["case_id"] == first.json()["case_id"]


async def test_bad_post_gets_422_naming_the_field(intake: httpx.AsyncClient) -> None:
    body = report()
    body["person"]["disability"]["grade"] = 7
    response = await intake.post("/v1/reports", json=body)
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["fields"]] == ["person.disability.grade"]


async def test_fifty_reports_at_once_never_push_a_volunteer_past_capacity(
    intake: httpx.AsyncClient,
    stack: DevStack,
) -> None:
    responses = await asyncio.gather(
        *(intake.post("/v1/reports", json=report()) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {202}
    cases = [await settled(intake, r.json()["case_id"], outreach=False) for r in responses]
    assert {c["status"] for c in cases} <= {"assigned", "escalated"}
    created = stack.cli("keys", "create", "--name", "duty officer", "--role", "operator",
                        "--division", "420100")  # fmt: skip
    officer = created.split("api key:")[1].split()[0]
    async with httpx.AsyncClient(base_url=stack.url("matching"), headers=bearer(officer)) as api:
        helpers = (await api.get("/v1/registry/helpers", params={"kind": "volunteer"})).json()
    capacity = {h["id"]: h["capacity"] for h in helpers}
    assert all(h["load"] <= h["capacity"] for h in helpers)
    per_helper = Counter(c["assignment"]["helper_id"] for c in cases if c["status"] == "assigned")
    assert all(n <= capacity[h] for h, n in per_helper.items())


async def test_every_service_reports_health_readiness_and_metrics(stack: DevStack) -> None:
    async with httpx.AsyncClient() as client:
        for service in ("intake", "matching", "notify"):
            base = stack.url(service)
            assert (await client.get(f"{base}/healthz")).status_code == 200
            assert (await client.get(f"{base}/readyz")).json()["status"] == "ready"
            assert (
                "faststream_received_messages_total" in (await client.get(f"{base}/metrics")).text
            )


def test_logs_are_written_per_service(stack: DevStack) -> None:
    for service in ("intake", "matching", "notify"):
        assert Path(stack.log_dir / f"{service}.log").stat().st_size > 0
