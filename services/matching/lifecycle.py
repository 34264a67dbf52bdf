"""The case state machine: offers, answers, timeouts, the climb up the ladder and closing the
loop. Pure.

received ──offer──▶ assigned ──accept──▶ accepted ──resolve (the helper)──▶ resolved
                      │  ▲                                                    ▲
       decline/timeout│  │next offer (same rung, or the next rung up)         │
                      ▼  │                                                    │
                    (ladder) ──nobody left──▶ escalated ──resolve (duty desk)─┘
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.contracts import CaseStatus, HelperKind, OfferResponse, Resolution, Resolver

from .domain import LADDER, Rung

TIMEOUT = "timeout"


@dataclass(frozen=True)
class Offer:
    offer_id: str
    helper_id: str
    kind: HelperKind
    name: str
    rung: Rung
    basis: str
    offered_at: datetime
    ack_due: datetime
    distance_km: float | None = None
    outcome: str | None = None  # accepted, declined or timeout
    reason: str = ""
    answered_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.outcome is None

    def to_document(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value, "rung": self.rung.value}

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Offer:
        return cls(**{**doc, "kind": HelperKind(doc["kind"]), "rung": Rung(doc["rung"])})


@dataclass(frozen=True)
class LadderStep:
    """The case came to a rung, and why: `start`, `offers_exhausted` (the rung's offers were
    used up), `no_eligible_helper`, `all_candidates_at_capacity`; on the duty desk, the reason
    it was escalated."""

    rung: Rung
    reason: str
    at: datetime

    def to_document(self) -> dict[str, Any]:
        return {"rung": self.rung.value, "reason": self.reason, "at": self.at}

    @classmethod
    def of(cls, doc: dict[str, Any]) -> LadderStep:
        return cls(Rung(doc["rung"]), doc["reason"], doc["at"])


@dataclass(frozen=True)
class Closing:
    """How the loop was closed, and by whom."""

    resolution: Resolution
    by: Resolver
    at: datetime
    helper_id: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution.value,
            "by": self.by.value,
            "at": self.at,
            "helper_id": self.helper_id,
        }

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Closing:
        return cls(Resolution(doc["resolution"]), Resolver(doc["by"]), doc["at"], doc["helper_id"])


@dataclass(frozen=True)
class CaseState:
    status: CaseStatus
    version: int
    rung: Rung = Rung.field
    offers_in_rung: int = 0
    offers: tuple[Offer, ...] = ()
    steps: tuple[LadderStep, ...] = ()
    closing: Closing | None = None

    @property
    def open_offer(self) -> Offer | None:
        return next((o for o in reversed(self.offers) if o.is_open), None)

    @property
    def offered_ids(self) -> frozenset[str]:
        return frozenset(o.helper_id for o in self.offers)

    @property
    def accepted_offer(self) -> Offer | None:
        return next((o for o in reversed(self.offers) if o.outcome == "accepted"), None)

    @classmethod
    def of(cls, doc: dict[str, Any]) -> CaseState:
        ladder = doc.get("ladder") or {}
        closing = doc.get("resolution")
        return cls(
            status=CaseStatus(doc["status"]),
            version=int(doc.get("version", 1)),
            rung=Rung(ladder.get("rung", Rung.field.value)),
            offers_in_rung=int(ladder.get("offers_in_rung", 0)),
            offers=tuple(Offer.of(o) for o in doc.get("offers", ())),
            steps=tuple(LadderStep.of(s) for s in ladder.get("steps", ())),
            closing=Closing.of(closing) if closing else None,
        )

    def to_fields(self) -> dict[str, Any]:
        """The fields an update `$set`s to store this state (the version is `$inc`ed)."""
        offer = self.open_offer
        fields = {
            "status": self.status.value,
            "ladder": {
                "rung": self.rung.value,
                "offers_in_rung": self.offers_in_rung,
                "steps": [s.to_document() for s in self.steps],
            },
            "offers": [o.to_document() for o in self.offers],
            "offer_due": offer.ack_due if offer else None,
        }
        if self.closing is not None:
            fields["resolution"] = self.closing.to_document()
        return fields


def rungs_to_try(state: CaseState, rungs: tuple[Rung, ...], max_per_rung: int) -> Iterator[Rung]:
    """The rungs still worth trying, from where the case stands; the duty desk always last."""
    start = LADDER.index(state.rung)
    for rung in rungs:
        position = LADDER.index(rung)
        if position < start:
            continue
        if (
            rung is state.rung
            and rung is not Rung.duty_desk
            and state.offers_in_rung >= max_per_rung
        ):
            continue
        yield rung


def climbed(state: CaseState, rung: Rung, reason: str, now: datetime) -> CaseState:
    """The case moves to `rung` (or starts on it), recording why; on the same rung, no step."""
    if state.steps and rung is state.rung:
        return state
    step = LadderStep(rung, reason, now)
    return replace(state, rung=rung, offers_in_rung=0, steps=(*state.steps, step))


def offered(state: CaseState, offer: Offer) -> CaseState:
    same_rung = offer.rung is state.rung and state.offers
    return replace(
        state,
        status=CaseStatus.assigned,
        rung=offer.rung,
        offers_in_rung=state.offers_in_rung + 1 if same_rung else 1,
        offers=(*state.offers, offer),
    )


def escalated(state: CaseState, reason: str = "", now: datetime | None = None) -> CaseState:
    if now is not None:
        state = climbed(state, Rung.duty_desk, reason, now)
    return replace(state, status=CaseStatus.escalated, rung=Rung.duty_desk)


class Answer(StrEnum):
    accepted = "accepted"
    declined = "declined"
    stale = "stale"  # not the open offer (already answered, timed out, or never made)


def answer(
    state: CaseState, offer_id: str, response: OfferResponse | str, now: datetime, reason: str = ""
) -> tuple[Answer, CaseState]:
    """Apply a helper's answer (or the timeout) to the open offer."""
    current = state.open_offer
    if state.status is not CaseStatus.assigned or current is None or current.offer_id != offer_id:
        return Answer.stale, state
    if response == OfferResponse.accept:
        closed = replace(current, outcome="accepted", answered_at=now)
        status, result = CaseStatus.accepted, Answer.accepted
    else:
        outcome = TIMEOUT if response == TIMEOUT else "declined"
        closed = replace(current, outcome=outcome, reason=reason or outcome, answered_at=now)
        status, result = CaseStatus.assigned, Answer.declined
    offers = tuple(closed if o.offer_id == offer_id else o for o in state.offers)
    return result, replace(state, status=status, offers=offers)


def resolve(
    state: CaseState, resolution: Resolution, by: Resolver, offer_id: str, now: datetime
) -> CaseState | None:
    """Close the loop: the helper who accepted resolves an accepted case (naming their offer),
    the duty desk an escalated one. None when it is not theirs to close (or already closed)."""
    if by is Resolver.helper:
        accepted = state.accepted_offer
        if state.status is not CaseStatus.accepted or accepted is None:
            return None
        if accepted.offer_id != offer_id:
            return None
        closing = Closing(resolution, by, now, accepted.helper_id)
    elif state.status is CaseStatus.escalated:
        closing = Closing(resolution, by, now)
    else:
        return None
    return replace(state, status=CaseStatus.resolved, closing=closing)


def holder(state: CaseState) -> str | None:
    """The helper whose capacity a case rightly holds: the open or the accepted offer's."""
    if state.status is CaseStatus.assigned and state.open_offer is not None:
        return state.open_offer.helper_id
    if state.status is CaseStatus.accepted and state.accepted_offer is not None:
        return state.accepted_offer.helper_id
    return None


def stale_claims(
    claims: dict[str, list[str]], cases: dict[str, CaseState]
) -> list[tuple[str, str, int]]:
    """Claims of capacity that no case backs: (helper, case, case version). A claim for a case
    still `received` is left alone (its decision may be in flight, or waiting for redelivery);
    a case that has moved on without this helper no longer needs it."""
    stale = []
    for helper_id, case_ids in claims.items():
        for case_id in case_ids:
            state = cases.get(case_id)
            if state is None or state.status is CaseStatus.received:
                continue
            if holder(state) != helper_id:
                stale.append((helper_id, case_id, state.version))
    return stale
