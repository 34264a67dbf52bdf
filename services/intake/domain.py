"""Turning a hotline's report into a case: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from shared.contracts import CaseFacts, CaseStatus, HardshipReport, HardshipReported
from shared.crypto import FieldCipher
from shared.outbox import pending
from shared.people import person_key, seal_report
from shared.storage import Document


def case_id_for(source: str, external_id: str, key: bytes) -> str:
    """The case id of a hotline ticket: stable, so a repeat post finds the same case, and keyed,
    so nobody can derive a case id from a ticket number."""
    message = f"{source}\x1f{external_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def facts_of(report: HardshipReport, received_at: datetime, person_key: str) -> CaseFacts:
    person = report.person
    return CaseFacts(
        source=report.source,
        external_id=report.external_id,
        need=report.need,
        urgency=report.urgency,
        disability_category=person.disability.category,
        disability_grade=person.disability.grade,
        lives_alone=person.lives_alone,
        household_disabled_count=person.household_disabled_count,
        low_income=person.low_income,
        has_carer=person.carer_phone is not None,
        lat=report.location.lat,
        lon=report.location.lon,
        division_code=report.location.division_code,
        reported_at=report.reported_at,
        received_at=received_at,
        person_key=person_key,
    )


def open_case(
    report: HardshipReport, case_id: str, now: datetime, cipher: FieldCipher, hash_key: bytes
) -> tuple[Document, HardshipReported]:
    """The case document as first stored (personal data sealed), its `hardship.reported` event
    waiting in the outbox."""
    facts = facts_of(report, now, person_key(report.person.phone, hash_key))
    event = HardshipReported(
        case_id=case_id,
        occurred_at=now,
        source=report.source,
        external_id=report.external_id,
        facts=facts,
    )
    document: Document = {
        "_id": case_id,
        "source": report.source,
        "external_id": report.external_id,
        "status": CaseStatus.received.value,
        "need": report.need.value,
        "urgency": report.urgency.value,
        "reported_at": report.reported_at,
        "received_at": now,
        **seal_report(report, case_id, cipher, hash_key),
        "facts": event.facts.model_dump(mode="python"),
        **pending([event], now),
        "assignment": None,
        "outreach": [],
        "timeline": [{"status": CaseStatus.received.value, "at": now}],
        "version": 1,
    }
    return document, event
