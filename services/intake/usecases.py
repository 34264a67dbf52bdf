"""Accepting a report: store the case with its event in the outbox, then publish it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.contracts import Event, HardshipReport, HardshipReported, utcnow
from shared.people import person_key

from .domain import case_id_for, open_case
from .metrics import IntakeMetrics
from .repository import CaseRepository

log = logging.getLogger("carerelay.intake")

Publish = Callable[[Event], Awaitable[None]]


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
        publish: Publish,
        case_id_key: bytes,
        metrics: IntakeMetrics,
        person_secret: bytes = b"",
        publish_timeout_s: float = 3.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._cases = cases
        self._publish = publish
        self._key = case_id_key
        self._person_secret = person_secret
        self._metrics = metrics
        self._publish_timeout_s = publish_timeout_s
        self._clock = clock

    async def accept(self, report: HardshipReport) -> Accepted:
        case_id = case_id_for(report.source, report.external_id, self._key)
        person = person_key(report.person.phone, self._person_secret)
        document, event = open_case(report, case_id, self._clock(), person)
        created = await self._cases.add(document)
        self._metrics.reports.labels(
            report.source, report.need.value, "accepted" if created else "duplicate"
        ).inc()
        if created:
            await self._relay(event)
        return Accepted(case_id, created)

    async def relay_pending(self, grace: timedelta, limit: int = 500) -> int:
        """Publish events whose first publish failed (the broker was down, or we crashed)."""
        relayed = 0
        for doc in await self._cases.unpublished(self._clock() - grace, limit):
            event = HardshipReported.model_validate(doc["events"][HardshipReported.slot()])
            if await self._relay(event):
                relayed += 1
        if relayed:
            self._metrics.outbox_relayed.inc(relayed)
        return relayed

    async def _relay(self, event: Event) -> bool:
        try:
            await asyncio.wait_for(self._publish(event), self._publish_timeout_s)
        except Exception as exc:  # the outbox keeps the event; the relay loop retries it
            log.warning(
                "publish of case %s deferred to the outbox relay: %s",
                event.case_id,
                type(exc).__name__,
            )
            return False
        await self._cases.mark_published(event.case_id)
        return True
