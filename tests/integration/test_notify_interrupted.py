"""A send cut off by a dying process (recorded `sending`, never finished) is neither resent
blindly nor forgotten: it becomes a dead letter for an operator, and `outreach.failed` says so."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.intake.domain import open_case
from services.notify.app import build_app
from services.notify.repository import attempt_record
from services.notify.settings import NotifySettings
from shared.contracts import (
    AssignedHelper,
    CaseAssigned,
    HardshipReport,
    HelperKind,
    OutreachDeadLetter,
    utcnow,
)
from shared.storage import CASES, Document
from tests.support import (
    DEV_CIPHER,
    PERSON_SECRET,
    EventListener,
    RecordingServer,
    running,
    service_env,
    wait_for,
)

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]


async def test_an_attempt_cut_off_mid_send_is_dead_lettered_not_resent(
    amqp_url: str, mongo_url: str, db_name: str, db: AsyncDatabase[Document],
    listener: EventListener,
) -> None:  # fmt: skip
    await listener.bind("outreach.failed")
    now = utcnow()
    report = HardshipReport.model_validate(copy.deepcopy(EXAMPLE) | {"external_id": "CUT-1"})
    case_id = uuid.uuid4().hex
    document, _ = open_case(report, case_id, now, DEV_CIPHER, PERSON_SECRET)
    offer = CaseAssigned(
        case_id=case_id,
        source=report.source,
        external_id=report.external_id,
        helper=AssignedHelper(helper_id="v1", kind=HelperKind.volunteer, name="李志愿"),
        need=report.need,
        urgency=report.urgency,
        division_code="420103",
        received_at=now,
        offer_id="o1",
    )
    ref = "assignment:o1:volunteer:v1"
    stuck = attempt_record(
        f"{case_id}:{ref}:wechat_work:1", "assignment", "volunteer", "wechat_work",
        "http://127.0.0.1/***", now - timedelta(minutes=10), "a-process-that-died", ref, "v1",
    )  # fmt: skip
    document |= {
        "outreach": [stuck],
        "events": {CaseAssigned.slot(): offer.model_dump(mode="json")},
    }
    await db[CASES].insert_one(document)
    env = service_env(amqp_url, mongo_url, db_name) | {
        "NOTIFY_INTERRUPTED_AFTER_S": "60",
        "NOTIFY_INTERRUPTED_SWEEP_S": "0.2",
    }
    async with RecordingServer() as wechat:
        env["WECHAT_WORK_WEBHOOK_URL"] = f"{wechat.url}/send?key=team"
        async with running(build_app(NotifySettings(**env))):  # type: ignore[arg-type]
            [failed] = await listener.wait("outreach.failed", case_id)
            letters = db[OutreachDeadLetter.collection]

            async def kept() -> Document | None:
                return await letters.find_one({"case_id": case_id})

            letter = OutreachDeadLetter.model_validate(await wait_for(kept))
        assert wechat.requests == [], "possibly sent already: never resent without a person"
    assert failed["error"].startswith("interrupted") and failed["recipient_id"] == "v1"
    assert (letter.purpose, letter.recipient_id, letter.status) == ("assignment", "v1", "open")
    assert letter.event["offer_id"] == "o1", "an operator can replay it from the stored event"
    case = await db[CASES].find_one({"_id": case_id}, {"outreach": 1})
    assert case is not None and [a["status"] for a in case["outreach"]] == ["interrupted"]
