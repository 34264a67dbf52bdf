"""Accepting a report: store the case with its event in the outbox, then publish it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.contracts import HardshipReport, utcnow
from shared.crypto import FieldCipher
from shared.outbox import OUTBOX, OUTBOX_AT, Flush, Outbox

from .domain import case_id_for, open_case
from .metrics import IntakeMetrics
from .repository import CaseRepository


class Overloaded(Exception):
    """The broker refused our last publish because the work queue is full: shed new reports
    (stored ones are safe in the outbox) until `retry_after_s` has passed."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"overloaded; retry after {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


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
        shed_for_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cases = cases
        self._outbox = outbox
        self._key = case_id_key
        self._cipher = cipher
        self._hash_key = hash_key
        self._metrics = metrics
        self._clock = clock
        self._shed_for_s = shed_for_s
        self._monotonic = monotonic
        self._shedding_until = 0.0

    async def accept(self, report: HardshipReport, actor: str) -> Accepted:
        """Store the report as a case unless its ticket is known; `actor` is the key (or the
        channel) it came through. Raises `Overloaded` while downstream queues are full."""
        self.check_capacity()
        case_id = case_id_for(report.source, report.external_id, self._key)
        document, _ = open_case(report, case_id, self._clock(), self._cipher, self._hash_key)
        document["created_by"] = actor
        created = await self._cases.add(document)
        result = "accepted" if created else "duplicate"
        self._metrics.reports.labels(report.source, report.need.value, result).inc()
        if created:
            self.note(await self._outbox.flush(case_id, document[OUTBOX], document[OUTBOX_AT]))
        return Accepted(case_id, created)

    def check_capacity(self) -> None:
        left = self._shedding_until - self._monotonic()
        if left > 0:
            raise Overloaded(left)

    def note(self, outcome: Flush) -> None:
        """Learn from a publish: a refusal means the queue is full; shed load for a while."""
        if outcome is Flush.refused:
            self._shedding_until = self._monotonic() + self._shed_for_s
