"""Deciding who goes and following the offer through: rank (pure), claim capacity (atomic),
record the case's new state (conditional on its version), publish."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.contracts import (
    AssignedHelper,
    CaseAccepted,
    CaseAssigned,
    CaseDeclined,
    CaseEscalated,
    CaseFacts,
    CaseResolved,
    CaseStatus,
    Event,
    HardshipReported,
    HelperKind,
    OfferAnswer,
    OfferResponse,
    ResolveCase,
    Resolver,
    utcnow,
)
from shared.crypto import FieldCipher
from shared.outbox import Flush, pending
from shared.people import open_case_personal_data
from shared.storage import Document

from .domain import (
    Candidate,
    Decision,
    Helper,
    Person,
    Rung,
    contact_via_carer,
    decide,
    duty_desk_for,
    rungs_for,
)
from .index import HelperIndex
from .lifecycle import (
    TIMEOUT,
    Answer,
    CaseState,
    Offer,
    answer,
    climbed,
    escalated,
    holder,
    offered,
    resolve,
    rungs_to_try,
    stale_claims,
)
from .links import OfferLinks
from .metrics import MatchingMetrics
from .oversight import tally_open_cases
from .policy import Policy
from .repository import OPEN_STATUSES, CaseStore, Claim, HelperStore, PeopleStore
from .triage import Triage, triage

log = logging.getLogger("carerelay.matching")

Publish = Callable[[Event], Awaitable[None]]


class EventOutbox(Protocol):
    """Publishes events stored in a case's outbox and clears them (shared.outbox.Outbox)."""

    async def flush_events(
        self, doc_id: str, events: Sequence[Event], stamp: datetime
    ) -> Flush: ...


UNKNOWN_DESK = AssignedHelper(helper_id="duty-desk", kind=HelperKind.duty_desk, name="残联值班室")


@dataclass
class Step:
    """The next state of a case, the events announcing it, and what to undo if it is not stored."""

    state: CaseState
    events: list[Event]
    decision: Decision | None
    timeline: list[Document] = field(default_factory=list)
    fresh_claim: str | None = None
    climbs: list[tuple[Rung, str]] = field(default_factory=list)


class Matching:
    def __init__(
        self,
        helpers: HelperStore,
        cases: CaseStore,
        people: PeopleStore,
        index: HelperIndex,
        policy: Policy,
        outbox: EventOutbox,
        publish: Publish,
        links: OfferLinks,
        metrics: MatchingMetrics,
        cipher: FieldCipher,
        stored_candidates: int = 5,
        stored_exclusions: int = 20,
        ack_window_scale: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._helpers = helpers
        self._cases = cases
        self._people = people
        self._index = index
        self._policy = policy
        self._outbox = outbox
        self._publish = publish
        self._links = links
        self._metrics = metrics
        self._cipher = cipher
        self._suspects: dict[tuple[str, str], tuple[int, datetime]] = {}
        self._stored_candidates = stored_candidates
        self._stored_exclusions = stored_exclusions
        self._ack_window_scale = ack_window_scale
        self._clock = clock

    async def refresh_index(self) -> None:
        """Reload the whole registry (loads held by other replicas included) and the keys of
        the people the store holds links for. A large registry is indexed in a worker thread,
        so the event loop keeps serving meanwhile; the new index then replaces the old."""
        documents, people = await self._helpers.all(), await self._people.keys()
        fresh = HelperIndex()
        await asyncio.to_thread(fresh.replace_all, documents)
        fresh.set_people(people)
        self._index = fresh
        self._metrics.helpers_indexed.set(len(fresh))

    async def on_registry_changed(self, helper_ids: Sequence[str], limit: int = 1000) -> None:
        """Bring the changed helpers (and people's pairings) into the index."""
        if not helper_ids or len(helper_ids) > limit:
            await self.refresh_index()
            return
        for doc in await self._helpers.some(list(helper_ids)):
            self._index.upsert(Helper.of(doc))
        self._index.set_people(await self._people.keys())
        self._metrics.helpers_indexed.set(len(self._index))

    async def reconcile_claims(self, grace: timedelta) -> int:
        """Give back capacity held for a case that went to someone else — a replica died
        between claiming a helper and recording its choice, and the redelivery chose another.
        A claim is released only when it looked stale twice, `grace` apart, with the case
        unchanged in between, so a decision in flight is never undone."""
        claims = await self._helpers.claims()
        held = sorted({case_id for case_ids in claims.values() for case_id in case_ids})
        states = {d["_id"]: CaseState.of(d) for d in await self._cases.states(held)} if held else {}
        now, released = self._clock(), 0
        suspects: dict[tuple[str, str], tuple[int, datetime]] = {}
        for helper_id, case_id, version in stale_claims(claims, states):
            seen = self._suspects.get((helper_id, case_id))
            if seen is None or seen[0] != version:
                suspects[helper_id, case_id] = (version, now)
            elif now - seen[1] >= grace:
                await self._helpers.release(helper_id, case_id)
                self._index.adjust_load(helper_id, -1)
                self._metrics.claims_released.inc()
                log.warning("released a stale claim of %s for case %s", helper_id, case_id)
                released += 1
            else:
                suspects[helper_id, case_id] = seen
        self._suspects = suspects
        return released

    async def count_open_cases(self) -> None:
        """Set the open-case gauges from the store (a periodic pass, not per event)."""
        tally = tally_open_cases(await self._cases.open_cases(), self._clock())
        # Every known priority and status is reported, zeros included, so alerts see them.
        priorities = {name for name, _ in self._policy.triage.classes} | {p for _, p in tally.open}
        self._metrics.open_cases.clear()
        self._metrics.first_contact_overdue.clear()
        for priority in sorted(priorities):
            for status in OPEN_STATUSES:
                self._metrics.open_cases.labels(status, priority).set(tally.open[status, priority])
            self._metrics.first_contact_overdue.labels(priority).set(tally.overdue[priority])

    # ------------------------------------------------------------------ a new case

    async def on_reported(self, event: HardshipReported) -> None:
        now, facts = self._clock(), event.facts
        sorting = triage(facts, self._policy.triage)
        person = await self._person(facts.person_key)
        state = CaseState(status=CaseStatus.received, version=1)
        step = await self._advance(event.case_id, facts, state, person, sorting, now)
        extra = {"triage": _triage_document(sorting)}
        if await self._cases.apply(event.case_id, 1, self._update(step, now, extra)):
            self._observe_first_decision(facts, step, now)
            self._observe(step)
            for out in step.events:
                await self._publish(out)
            return
        # Another delivery of this event decided first: undo our claim, repeat its announcement.
        await self._undo(step, event.case_id)
        await self._republish(event.case_id)

    # ------------------------------------------------------------------ answers and timeouts

    async def answer(self, reply: OfferAnswer, reason: str = "") -> Answer:
        doc = await self._cases.get(reply.case_id)
        if doc is None:
            return Answer.stale
        now = self._clock()
        state = CaseState.of(doc)
        current = state.open_offer
        result, answered = answer(
            state, reply.offer_id, reply.response, now, reason or reply.reason
        )
        if result is Answer.stale or current is None:
            return Answer.stale
        facts = CaseFacts.model_validate(doc["facts"])
        helper = _assigned(current)
        if result is Answer.accepted:
            step = Step(
                answered,
                [
                    CaseAccepted(
                        case_id=reply.case_id,
                        offer_id=current.offer_id,
                        helper=helper,
                        **_reference(facts),
                    )
                ],
                None,
                [_entry(now, "accepted", helper_id=current.helper_id)],
            )
            if not await self._store(reply.case_id, state.version, step, now):
                return Answer.stale
            self._metrics.answers.labels("accepted").inc()
            await self._helpers.count_accept(current.helper_id)
            await self._people.remember_helper(facts.person_key, current.helper_id, now)
            self._index.remember_person(facts.person_key)
            return result
        closed = next(o for o in answered.offers if o.offer_id == current.offer_id)
        declined = CaseDeclined(
            **_reference(facts),
            case_id=reply.case_id,
            offer_id=current.offer_id,
            helper=helper,
            reason=closed.outcome or "declined",
        )
        sorting = _triage_of(doc, facts, self._policy)
        person = await self._person(facts.person_key)
        step = await self._advance(reply.case_id, facts, answered, person, sorting, now)
        step.events.insert(0, declined)
        step.timeline.insert(
            0, _entry(now, "declined", reason=declined.reason, helper_id=current.helper_id)
        )
        if not await self._store(reply.case_id, state.version, step, now):
            await self._undo(step, reply.case_id)
            return Answer.stale
        self._metrics.answers.labels(declined.reason).inc()
        self._observe(step)
        await self._helpers.release(current.helper_id, reply.case_id)
        self._index.adjust_load(current.helper_id, -1)
        return result

    # ------------------------------------------------------------------ closing the loop

    async def resolve(self, command: ResolveCase) -> bool:
        """Close the case as the helper who accepted it (or the duty desk, once escalated):
        record, release the helper's capacity, announce `case.resolved`. False when it was not
        theirs to close or already closed."""
        doc = await self._cases.get(command.case_id)
        if doc is None:
            return False
        now, state = self._clock(), CaseState.of(doc)
        closed = resolve(state, command.resolution, command.by, command.offer_id, now)
        if closed is None:
            return False
        facts = CaseFacts.model_validate(doc["facts"])
        accepted = state.accepted_offer if command.by is Resolver.helper else None
        if accepted is not None:
            helper: AssignedHelper | None = _assigned(accepted)
        else:
            helper = (
                AssignedHelper.model_validate(doc["assignment"]) if doc.get("assignment") else None
            )
        out = CaseResolved(
            case_id=command.case_id,
            resolution=command.resolution,
            helper=helper,
            by=command.by,
            **_reference(facts),
        )
        entry = _entry(
            now,
            "resolved",
            reason=command.resolution.value,
            helper_id=helper.helper_id if helper else None,
        )
        if not await self._store(
            command.case_id, state.version, Step(closed, [out], None, [entry]), now
        ):
            return False
        self._metrics.resolved.labels(command.resolution.value).inc()
        if accepted is not None:
            await self._helpers.release(accepted.helper_id, command.case_id)
            self._index.adjust_load(accepted.helper_id, -1)
        return True

    async def _person(self, person_key: str) -> Person:
        """The person's links; no read at all when the store holds none for them."""
        if not person_key or not self._index.knows_person(person_key):
            return Person()
        return await self._people.get(person_key)

    async def contact_details(self, case_id: str) -> tuple[str | None, str | None]:
        """Address, and the number to call: the carer's when contact goes through the carer."""
        doc = await self._cases.contact(case_id)
        if doc is None:
            return None, None
        person = open_case_personal_data(doc, self._cipher)
        via_carer = contact_via_carer(CaseFacts.model_validate(doc["facts"]), self._policy)
        return person.address, person.carer_phone if via_carer else person.phone

    async def sweep_timeouts(self, limit: int = 200) -> int:
        """Treat every offer past its acknowledgement window as declined for `timeout`."""
        swept = 0
        for doc in await self._cases.overdue_offers(self._clock(), limit):
            open_offer = CaseState.of({"status": "assigned", **doc}).open_offer
            if open_offer is None:
                continue
            reply = OfferAnswer(
                case_id=doc["_id"], offer_id=open_offer.offer_id, response=OfferResponse.decline
            )
            if await self.answer_timeout(reply) is Answer.declined:
                swept += 1
        return swept

    async def answer_timeout(self, reply: OfferAnswer) -> Answer:
        return await self.answer(reply.model_copy(update={"response": TIMEOUT}), TIMEOUT)

    # ------------------------------------------------------------------ the ladder

    async def _advance(
        self,
        case_id: str,
        facts: CaseFacts,
        state: CaseState,
        person: Person,
        sorting: Triage,
        now: datetime,
    ) -> Step:
        """Offer the case to the best helper whose capacity we can claim, climbing the ladder
        as rungs run out (each step recorded with its reason); the duty desk when nobody is
        left."""
        first: Decision | None = None
        saw_candidates = False
        why = "start" if not state.steps else "offers_exhausted"
        climbs: list[tuple[Rung, str]] = []
        for rung in rungs_to_try(
            state, rungs_for(facts.need, self._policy), self._policy.max_offers_per_rung
        ):
            if rung is Rung.duty_desk:
                break
            if not state.steps or rung is not state.rung:
                state = climbed(state, rung, why, now)
                climbs.append((rung, why))
            started = time.perf_counter()
            decision = decide(
                facts,
                self._index.pool(facts, rung, person, self._policy, now),
                self._policy,
                now,
                rung,
                person,
                state.offered_ids,
                nearest_first=True,
            )
            self._metrics.candidate_search.observe(time.perf_counter() - started)
            first = first or decision
            saw_candidates = saw_candidates or bool(decision.candidates)
            chosen = await self._claim_first(decision.candidates, case_id)
            if chosen is not None:
                candidate, fresh = chosen
                step = self._offer(
                    case_id, facts, state, candidate, rung, sorting, now, decision, fresh
                )
                step.climbs = climbs
                return step
            why = "all_candidates_at_capacity" if decision.candidates else "no_eligible_helper"
        if state.offers:
            reason = "offers_exhausted"
        elif saw_candidates:
            reason = "all_candidates_at_capacity"
        else:
            reason = "no_eligible_helper"
        desk = duty_desk_for(facts.division_code, self._index.duty_desks())
        target = (
            AssignedHelper(helper_id=desk.id, kind=desk.kind, name=desk.name)
            if desk
            else UNKNOWN_DESK
        )
        out = CaseEscalated(case_id=case_id, helper=target, reason=reason, **_common(facts))
        return Step(
            escalated(state, reason, now),
            [out],
            first,
            [_entry(now, "escalated", reason=reason, helper_id=target.helper_id)],
            climbs=[*climbs, (Rung.duty_desk, reason)],
        )

    def _offer(
        self,
        case_id: str,
        facts: CaseFacts,
        state: CaseState,
        candidate: Candidate,
        rung: Rung,
        sorting: Triage,
        now: datetime,
        decision: Decision,
        fresh: bool,
    ) -> Step:
        helper = candidate.helper
        offer = Offer(
            offer_id=uuid.uuid4().hex,
            helper_id=helper.id,
            kind=helper.kind,
            name=helper.name,
            rung=rung,
            basis=candidate.basis.value,
            offered_at=now,
            ack_due=now + sorting.ack_window * self._ack_window_scale,
            distance_km=candidate.distance_km,
        )
        out = CaseAssigned(
            case_id=case_id,
            helper=_assigned(offer),
            offer_id=offer.offer_id,
            ack_due=offer.ack_due,
            respond_url=self._links.url(case_id, offer.offer_id),
            priority=sorting.priority,
            rung=rung.value,
            contact_via_carer=contact_via_carer(facts, self._policy),
            **_common(facts),
        )
        entry = _entry(
            now, "assigned", reason=candidate.basis.value, helper_id=helper.id, rung=rung.value
        )
        return Step(offered(state, offer), [out], decision, [entry], helper.id if fresh else None)

    async def _claim_first(
        self, candidates: Sequence[Candidate], case_id: str
    ) -> tuple[Candidate, bool] | None:
        """The first candidate whose capacity we hold, and whether this call took it."""
        for candidate in candidates:
            claim = await self._helpers.claim(
                candidate.helper.id, case_id, candidate.helper.capacity
            )
            if claim is Claim.taken:
                self._index.adjust_load(candidate.helper.id, +1)
                return candidate, True
            if claim is Claim.already_held:
                return candidate, False
            self._metrics.claim_conflicts.inc()
            self._index.mark_full(candidate.helper.id)
        return None

    # ------------------------------------------------------------------ storing and announcing

    def _update(
        self, step: Step, now: datetime, extra: dict[str, Any] | None = None, outbox: bool = False
    ) -> Document:
        state = step.state
        fields: Document = {**state.to_fields(), "updated_at": now, **(extra or {})}
        escalation = next((e for e in step.events if isinstance(e, CaseEscalated)), None)
        if escalation is not None:
            fields["assignment"] = escalation.helper.model_dump(mode="json")
        elif state.offers:
            fields["assignment"] = _assigned(state.offers[-1]).model_dump(mode="json")
        push: Document = {"timeline": {"$each": step.timeline}}
        if step.decision is not None:
            decision = self._decision_document(step.decision, escalation, now)
            fields["decision"] = decision
            push["decisions"] = decision
        for out in step.events:
            fields[f"events.{out.slot()}"] = out.model_dump(mode="json")
        if outbox:
            fields.update(pending(step.events, now))
        return {"$set": fields, "$inc": {"version": 1}, "$push": push}

    def _observe(self, step: Step) -> None:
        """Count a stored step's offers and climbs up the ladder."""
        for out in step.events:
            if isinstance(out, CaseAssigned):
                self._metrics.offers.labels(out.rung, out.helper.kind.value).inc()
        for rung, reason in step.climbs:
            if reason != "start":
                self._metrics.escalations.labels(rung.value, reason).inc()

    async def _store(self, case_id: str, version: int, step: Step, now: datetime) -> bool:
        """Store an answer's outcome with its events in the outbox, then publish them."""
        if not await self._cases.apply(case_id, version, self._update(step, now, outbox=True)):
            return False
        await self._outbox.flush_events(case_id, step.events, now)
        return True

    def _decision_document(
        self, decision: Decision, escalation: CaseEscalated | None, now: datetime
    ) -> Document:
        return {
            "at": now,
            "considered": decision.considered,
            "outcome": "escalate" if escalation else "offer",
            "reason": escalation.reason
            if escalation
            else (decision.candidates[0].basis.value if decision.candidates else ""),
            "rung": decision.rung.value,
            "required_skills": sorted(decision.required_skills),
            "candidates": [
                {
                    "helper_id": c.helper.id,
                    "kind": c.helper.kind.value,
                    "basis": c.basis.value,
                    "score": None if c.score == float("inf") else c.score,
                    "distance_km": c.distance_km,
                }
                for c in decision.candidates[: self._stored_candidates]
            ],
            "excluded": [
                {"helper_id": h, "reason": r.value}
                for h, r in decision.excluded[: self._stored_exclusions]
            ],
        }

    async def _undo(self, step: Step, case_id: str) -> None:
        """Give back the claim this attempt took — unless the decision that won uses the same
        helper: a duplicate delivery racing this one found the claim held and shares it."""
        if step.fresh_claim is None:
            return
        stored = await self._cases.get(case_id)
        if stored is not None and holder(CaseState.of(stored)) == step.fresh_claim:
            return
        await self._helpers.release(step.fresh_claim, case_id)
        self._index.adjust_load(step.fresh_claim, -1)

    async def _republish(self, case_id: str) -> None:
        stored = await self._cases.events(case_id)
        for model in (CaseAssigned, CaseEscalated):
            if model.slot() in stored:
                await self._publish(model.model_validate(stored[model.slot()]))

    def _observe_first_decision(self, facts: CaseFacts, step: Step, now: datetime) -> None:
        out = step.events[-1]
        outcome = "offer" if isinstance(out, CaseAssigned) else "escalate"
        kind = out.helper.kind.value if isinstance(out, CaseAssigned | CaseEscalated) else ""
        self._metrics.decisions.labels(outcome, kind, facts.need.value).inc()
        waited = max(0.0, (now - facts.received_at).total_seconds())
        self._metrics.report_to_decision.observe(waited)
        if isinstance(out, CaseAssigned):
            self._metrics.report_to_first_offer.observe(waited)


def _assigned(offer: Offer) -> AssignedHelper:
    return AssignedHelper(
        helper_id=offer.helper_id, kind=offer.kind, name=offer.name, distance_km=offer.distance_km
    )


def _reference(facts: CaseFacts) -> dict[str, Any]:
    """The hotline's reference, carried on every case event for its status callbacks."""
    return {"source": facts.source, "external_id": facts.external_id}


def _common(facts: CaseFacts) -> dict[str, Any]:
    return {
        **_reference(facts),
        "need": facts.need,
        "urgency": facts.urgency,
        "division_code": facts.division_code,
        "received_at": facts.received_at,
    }


def _entry(now: datetime, status: str, **details: str | None) -> Document:
    return {"status": status, "at": now, **{k: v for k, v in details.items() if v is not None}}


def _triage_document(t: Triage) -> Document:
    return {
        "priority": t.priority,
        "score": t.score,
        "factors": list(t.factors),
        "first_contact_due": t.first_contact_due,
        "resolution_due": t.resolution_due,
        "ack_window_s": t.ack_window.total_seconds(),
    }


def _triage_of(doc: Document, facts: CaseFacts, policy: Policy) -> Triage:
    stored = doc.get("triage")
    if not stored:
        return triage(facts, policy.triage)
    return replace(
        triage(facts, policy.triage), ack_window=timedelta(seconds=stored["ack_window_s"])
    )
