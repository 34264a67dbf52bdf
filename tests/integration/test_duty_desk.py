"""A duty officer closes an escalated case through intake's API; matching applies it. Only an
operator key of that district may, and every attempt is in the audit log."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import build_app as build_intake
from services.intake.settings import IntakeSettings
from services.matching.app import build_app as build_matching
from services.matching.settings import MatchingSettings
from shared.auth import Role
from shared.contracts import HardshipReport, HelperKind, HelperRecord, utcnow
from shared.registry import upsert_helpers
from shared.storage import AUDIT, Document
from tests.support import PERSON_SECRET, bearer, issue_key, running, service_env, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
DESK = HelperRecord(
    id="desk", kind=HelperKind.duty_desk, name="武汉市残联值班室", divisions=["420100"]
)


@pytest.fixture
async def intake(
    amqp_url: str, mongo_url: str, db_name: str, db: AsyncDatabase[Document]
) -> AsyncIterator[httpx.AsyncClient]:
    await upsert_helpers(db, [DESK], utcnow(), PERSON_SECRET)  # nobody else: every case escalates
    env = service_env(amqp_url, mongo_url, db_name)
    async with (
        running(build_matching(MatchingSettings(**env))),  # type: ignore[arg-type]
        running(build_intake(IntakeSettings(**env))) as client,  # type: ignore[arg-type]
    ):
        yield client


async def escalated_case(intake: httpx.AsyncClient, hotline: str) -> str:
    body = copy.deepcopy(EXAMPLE) | {"external_id": uuid.uuid4().hex}
    case_id: str = (await intake.post("/v1/reports", json=body, headers=bearer(hotline))).json()[
        "case_id"
    ]

    async def escalated() -> bool:
        case = (await intake.get(f"/v1/cases/{case_id}", headers=bearer(hotline))).json()
        return bool(case["status"] == "escalated")

    await wait_for(escalated)
    return case_id


async def test_a_duty_officer_of_the_district_closes_an_escalated_case(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    hotline, _ = await issue_key(db)
    officer, _ = await issue_key(db, role=Role.operator, source=None, divisions=("420103",))
    case_id = await escalated_case(intake, hotline)
    bad = await intake.post(
        f"/v1/cases/{case_id}/resolution", json={"resolution": "vanished"}, headers=bearer(officer)
    )
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "resolution"
    done = await intake.post(
        f"/v1/cases/{case_id}/resolution", json={"resolution": "helped"}, headers=bearer(officer)
    )
    assert done.status_code == 202 and done.json()["status_url"] == f"/v1/cases/{case_id}"

    async def resolved() -> dict[str, Any] | None:
        case = (await intake.get(f"/v1/cases/{case_id}", headers=bearer(officer))).json()
        return case if case["status"] == "resolved" else None

    case = await wait_for(resolved)
    assert case["timeline"][-1]["status"] == "resolved"
    audit = [e async for e in db[AUDIT].find({"case_id": case_id, "action": "resolve"})]
    assert [(e["actor"], e["outcome"]) for e in audit] == [(officer.split("_")[1], "helped")]


async def test_only_an_operator_of_that_district_may_close_it(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    hotline, _ = await issue_key(db)
    elsewhere, _ = await issue_key(db, role=Role.operator, source=None, divisions=("420106",))
    case_id = await escalated_case(intake, hotline)
    as_hotline = await intake.post(
        f"/v1/cases/{case_id}/resolution", json={"resolution": "helped"}, headers=bearer(hotline)
    )
    assert as_hotline.status_code == 403
    as_outsider = await intake.post(
        f"/v1/cases/{case_id}/resolution", json={"resolution": "helped"}, headers=bearer(elsewhere)
    )
    assert as_outsider.status_code == 404
    status = (await intake.get(f"/v1/cases/{case_id}", headers=bearer(hotline))).json()["status"]
    assert status == "escalated"
