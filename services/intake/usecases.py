"""Accepting a report: store the case with its event in the outbox, then publish it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.contracts import HardshipReport, utcnow
from shared.crypto import FieldCipher
from shared.outbox import OUTBOX, OUTBOX_AT, Outbox

from .domain import case_id_for, open_case
from .metrics import IntakeMetrics
from .repository import CaseRepository


@dataclass(frozen=True)
class Accepted:
    case_id: str
    created: bool

    @property
    def status_url(self) -> str:
        return f"/v1/cases/{self.case_id}"


class Intake:
    def __init__(
        self,
        cases: CaseRepository,
        outbox: Outbox,
        case_id_key: bytes,
        metrics: IntakeMetrics,
        cipher: FieldCipher,
        hash_key: bytes,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._cases = cases
        self._outbox = outbox
        self._key = case_id_key
        self._cipher = cipher
        self._hash_key = hash_key
        self._metrics = metrics
        self._clock = clock

    async def accept(self, report: HardshipReport, actor: str) -> Accepted:
        """Store the report as a case unless its ticket is known; `actor` is the key (or the
        channel) it came through."""
        case_id = case_id_for(report.source, report.external_id, self._key)
        document, _ = open_case(report, case_id, self._clock(), self._cipher, self._hash_key)
        document["created_by"] = actor
        created = await self._cases.add(document)
        result = "accepted" if created else "duplicate"
        self._metrics.reports.labels(report.source, report.need.value, result).inc()
        if created:
            await self._outbox.flush(case_id, document[OUTBOX], document[OUTBOX_AT])
        return Accepted(case_id, created)
