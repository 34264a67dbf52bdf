"""Only the right callers see or change a case: keys, districts, signatures, limits, audit."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import build_app
from services.intake.settings import IntakeSettings
from shared.auth import MongoKeyStore, Role, sign
from shared.contracts import HardshipReport, utcnow
from shared.storage import AUDIT, CASES, Document
from tests.support import bearer, issue_key, running, service_env

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]  # 420103 江汉区
WUCHANG = "420106"


def report(external_id: str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = external_id
    body.update(changes)
    return body


@pytest.fixture
async def intake(amqp_url: str, mongo_url: str, db_name: str) -> AsyncIterator[httpx.AsyncClient]:
    env = service_env(amqp_url, mongo_url, db_name) | {
        "API_KEY_CACHE_S": "0",
        "RATE_LIMIT_PER_KEY": "20/minute",
        "MAX_BODY_BYTES": "8192",
    }
    async with running(build_app(IntakeSettings(**env))) as client:  # type: ignore[arg-type]
        yield client


async def post(
    intake: httpx.AsyncClient, token: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await intake.post("/v1/reports", json=body, headers=bearer(token) | headers)


async def test_no_key_or_an_unknown_key_is_refused_and_nothing_is_stored(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    missing = await intake.post("/v1/reports", json=report("S-1"))
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in missing.json()["message"]
    unknown = await post(intake, "crk_abcdef_not-a-key-we-ever-issued", report("S-1"))
    assert unknown.status_code == 401
    assert await db[CASES].count_documents({}) == 0


async def test_a_revoked_key_stops_working(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    token, _ = await issue_key(db)
    assert (await post(intake, token, report("S-2"))).status_code == 202
    assert await MongoKeyStore(db).revoke(token.split("_")[1], utcnow())
    refused = await post(intake, token, report("S-3"))
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]


async def test_a_key_for_another_county_cannot_report_there_or_read_its_cases(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    jianghan, _ = await issue_key(db, divisions=("420103",))
    wuchang, _ = await issue_key(db, divisions=(WUCHANG,))
    refused = await post(intake, wuchang, report("S-4"))
    assert refused.status_code == 403
    assert refused.json()["message"].startswith("location.division_code")

    case_id = (await post(intake, jianghan, report("S-4"))).json()["case_id"]
    other_county = await intake.get(f"/v1/cases/{case_id}", headers=bearer(wuchang))
    absent = await intake.get("/v1/cases/0123456789abcdef", headers=bearer(wuchang))
    assert other_county.status_code == absent.status_code == 404
    assert other_county.json() == absent.json(), "out of scope must look exactly like absent"
    assert (await intake.get(f"/v1/cases/{case_id}", headers=bearer(jianghan))).status_code == 200


async def test_a_hotline_reports_only_as_its_own_source_and_reads_only_its_cases(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    wuhan, _ = await issue_key(db, source="12345-wuhan")
    other, _ = await issue_key(db, source="96333-wuhan")
    refused = await post(intake, other, report("S-5"))
    assert refused.status_code == 403 and refused.json()["message"].startswith("source")
    case_id = (await post(intake, wuhan, report("S-5"))).json()["case_id"]
    assert (await intake.get(f"/v1/cases/{case_id}", headers=bearer(other))).status_code == 404


async def test_a_hotline_sees_the_person_masked_and_a_duty_officer_sees_them_whole(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    hotline, _ = await issue_key(db)
    officer, _ = await issue_key(db, role=Role.operator, source=None, divisions=("420103",))
    case_id = (await post(intake, hotline, report("S-6"))).json()["case_id"]

    masked = (await intake.get(f"/v1/cases/{case_id}", headers=bearer(hotline))).json()["person"]
    assert masked["masked"] is True
    assert masked["name"] == "张**" and masked["phone"] == "*******8000"
    assert masked["address"] == "江汉区"
    whole = (await intake.get(f"/v1/cases/{case_id}", headers=bearer(officer))).json()["person"]
    assert whole["masked"] is False
    assert (whole["name"], whole["phone"]) == ("张秀英", "13800138000")
    assert whole["address"] == EXAMPLE["location"]["address"]


async def test_an_operator_key_cannot_post_reports(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    officer, _ = await issue_key(db, role=Role.operator, source=None, divisions=("420100",))
    assert (await post(intake, officer, report("S-7"))).status_code == 403


async def test_every_read_is_audited_with_who_and_whether_it_was_allowed(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    hotline, _ = await issue_key(db)
    outsider, _ = await issue_key(db, divisions=(WUCHANG,))
    case_id = (await post(intake, hotline, report("S-8"))).json()["case_id"]
    await intake.get(f"/v1/cases/{case_id}", headers=bearer(hotline))
    await intake.get(f"/v1/cases/{case_id}", headers=bearer(outsider))
    entries = [e async for e in db[AUDIT].find({"case_id": case_id}).sort("at", 1)]
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == [
        (hotline.split("_")[1], "read", "ok"),
        (outsider.split("_")[1], "read", "not_found"),
    ]
    stored = await db[CASES].find_one({"_id": case_id})
    assert stored is not None and stored["created_by"] == hotline.split("_")[1]


def signed(secret: str, body: bytes, at: float) -> dict[str, str]:
    timestamp = str(int(at))
    return {
        "X-CareRelay-Timestamp": timestamp,
        "X-CareRelay-Signature": sign(secret, timestamp, body),
        "Content-Type": "application/json",
    }


async def test_a_key_that_requires_signatures_refuses_unsigned_tampered_and_stale_bodies(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    token, secret = await issue_key(db, require_signature=True)
    assert secret is not None
    body = json.dumps(report("S-9")).encode()

    unsigned = await post(intake, token, report("S-9"))
    assert unsigned.status_code == 401 and "X-CareRelay-Signature" in unsigned.json()["message"]

    good = signed(secret, body, time.time())
    accepted = await intake.post("/v1/reports", content=body, headers=bearer(token) | good)
    assert accepted.status_code == 202

    tampered = body.replace(b"medicine", b"food")
    refused = await intake.post("/v1/reports", content=tampered, headers=bearer(token) | good)
    assert refused.status_code == 401 and "does not match" in refused.json()["message"]

    stale = signed(secret, body, time.time() - 3600)
    replayed = await intake.post("/v1/reports", content=body, headers=bearer(token) | stale)
    assert replayed.status_code == 401 and "clock" in replayed.json()["message"]
    assert await db[CASES].count_documents({}) == 1


async def test_a_signed_request_replayed_inside_the_window_creates_nothing_new(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    token, secret = await issue_key(db, require_signature=True)
    assert secret is not None
    body = json.dumps(report("S-10")).encode()
    headers = bearer(token) | signed(secret, body, time.time())
    first = await intake.post("/v1/reports", content=body, headers=headers)
    again = await intake.post("/v1/reports", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["case_id"] == first.json()["case_id"]
    assert await db[CASES].count_documents({}) == 1


async def test_an_oversized_body_is_refused_before_it_is_read(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    token, _ = await issue_key(db)
    response = await post(intake, token, report("S-11", description="很" * 4000))
    assert response.status_code == 413 and "8192 bytes" in response.json()["message"]
    assert await db[CASES].count_documents({}) == 0


async def test_a_key_over_its_rate_is_told_when_to_come_back(
    intake: httpx.AsyncClient, db: AsyncDatabase[Document]
) -> None:
    token, _ = await issue_key(db)
    statuses = [(await intake.get("/v1/cases/x", headers=bearer(token))) for _ in range(21)]
    assert [r.status_code for r in statuses] == [404] * 20 + [429]
    assert int(statuses[-1].headers["retry-after"]) >= 1
