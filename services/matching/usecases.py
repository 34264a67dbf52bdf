"""Deciding who goes: rank (pure), claim capacity (atomic), record (conditional), publish."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from shared.contracts import (
    AssignedHelper,
    CaseAssigned,
    CaseEscalated,
    CaseStatus,
    Event,
    HardshipReported,
    HelperKind,
    utcnow,
)
from shared.storage import Document

from .domain import Candidate, Decision, duty_desk_for
from .domain import decide as rank
from .index import HelperIndex
from .metrics import MatchingMetrics
from .policy import Policy
from .repository import CaseStore, Claim, HelperStore

log = logging.getLogger("carerelay.matching")

Publish = Callable[[Event], Awaitable[None]]
UNKNOWN_DESK = AssignedHelper(helper_id="duty-desk", kind=HelperKind.duty_desk, name="残联值班室")


class Matching:
    def __init__(
        self,
        helpers: HelperStore,
        cases: CaseStore,
        index: HelperIndex,
        policy: Policy,
        publish: Publish,
        metrics: MatchingMetrics,
        stored_candidates: int = 5,
        stored_exclusions: int = 20,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._helpers = helpers
        self._cases = cases
        self._index = index
        self._policy = policy
        self._publish = publish
        self._metrics = metrics
        self._stored_candidates = stored_candidates
        self._stored_exclusions = stored_exclusions
        self._clock = clock

    async def refresh_index(self) -> None:
        self._index.replace_all(await self._helpers.all())
        self._metrics.helpers_indexed.set(len(self._index))

    async def on_reported(self, event: HardshipReported) -> None:
        started = time.perf_counter()
        decision = rank(event.facts, self._index.snapshot(), self._policy)
        self._metrics.candidate_search.observe(time.perf_counter() - started)
        chosen, fresh = await self._claim_first(decision, event.case_id)
        outcome = self._outcome(event, chosen, decision)
        now = self._clock()
        if await self._cases.record_decision(
            event.case_id,
            _decision_update(
                outcome, decision, chosen, now, self._stored_candidates, self._stored_exclusions
            ),
        ):
            self._observe(event, outcome, now)
            await self._publish(outcome)
            return
        # Another delivery of this event decided first: undo our claim, repeat its announcement.
        if chosen is not None and fresh:
            await self._helpers.release(chosen.helper.id, event.case_id)
            self._index.adjust_load(chosen.helper.id, -1)
        await self._republish(event.case_id)

    async def _claim_first(self, decision: Decision, case_id: str) -> tuple[Candidate | None, bool]:
        """The first candidate whose capacity we hold, and whether this call took it."""
        for candidate in decision.candidates:
            claim = await self._helpers.claim(candidate.helper.id, case_id)
            if claim is Claim.taken:
                self._index.adjust_load(candidate.helper.id, +1)
                return candidate, True
            if claim is Claim.already_held:
                return candidate, False
            self._metrics.claim_conflicts.inc()
            self._index.mark_full(candidate.helper.id)
        return None, False

    def _outcome(
        self, event: HardshipReported, chosen: Candidate | None, decision: Decision
    ) -> CaseAssigned | CaseEscalated:
        facts = event.facts
        common = {
            "case_id": event.case_id,
            "need": facts.need,
            "urgency": facts.urgency,
            "division_code": facts.division_code,
            "received_at": facts.received_at,
        }
        if chosen is not None:
            helper = AssignedHelper(
                helper_id=chosen.helper.id,
                kind=chosen.helper.kind,
                name=chosen.helper.name,
                distance_km=chosen.distance_km,
            )
            return CaseAssigned(helper=helper, **common)
        desk = duty_desk_for(facts.division_code, self._index.snapshot())
        target = (
            AssignedHelper(helper_id=desk.id, kind=desk.kind, name=desk.name)
            if desk
            else UNKNOWN_DESK
        )
        reason = "all_candidates_at_capacity" if decision.candidates else "no_eligible_helper"
        return CaseEscalated(helper=target, reason=reason, **common)

    def _observe(
        self, event: HardshipReported, outcome: CaseAssigned | CaseEscalated, now: datetime
    ) -> None:
        kind = "assign" if isinstance(outcome, CaseAssigned) else "escalate"
        self._metrics.decisions.labels(
            kind, outcome.helper.kind.value, event.facts.need.value
        ).inc()
        waited = (now - event.facts.received_at).total_seconds()
        self._metrics.report_to_decision.observe(max(0.0, waited))

    async def _republish(self, case_id: str) -> None:
        stored = await self._cases.events(case_id)
        for model in (CaseAssigned, CaseEscalated):
            if model.slot() in stored:
                await self._publish(model.model_validate(stored[model.slot()]))


def _decision_update(
    outcome: CaseAssigned | CaseEscalated,
    decision: Decision,
    chosen: Candidate | None,
    now: datetime,
    top: int,
    exclusions: int,
) -> Document:
    assigned = isinstance(outcome, CaseAssigned)
    status = CaseStatus.assigned if assigned else CaseStatus.escalated
    reason = "nearest_eligible_with_capacity" if assigned else outcome.reason  # type: ignore[union-attr]
    return {
        "$set": {
            "status": status.value,
            "assignment": outcome.helper.model_dump(mode="json"),
            "decision": {
                "outcome": "assign" if assigned else "escalate",
                "reason": reason,
                "required_skills": sorted(decision.required_skills),
                "candidates": [
                    {
                        "helper_id": c.helper.id,
                        "kind": c.helper.kind.value,
                        "score": c.score,
                        "distance_km": c.distance_km,
                    }
                    for c in decision.candidates[:top]
                ],
                "excluded": [
                    {"helper_id": h, "reason": r.value} for h, r in decision.excluded[:exclusions]
                ],
            },
            f"events.{outcome.slot()}": outcome.model_dump(mode="json"),
            "updated_at": now,
        },
        "$inc": {"version": 1},
        "$push": {"timeline": {"status": status.value, "at": now, "reason": reason}},
    }
