"""Triage and the offer state machine, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.matching.domain import Rung
from services.matching.lifecycle import (
    Answer,
    CaseState,
    Offer,
    answer,
    climbed,
    escalated,
    offered,
    resolve,
    rungs_to_try,
)
from services.matching.oversight import tally_open_cases
from services.matching.policy import Policy
from services.matching.triage import triage
from shared.contracts import (
    CaseFacts,
    CaseStatus,
    DisabilityCategory,
    HelperKind,
    Need,
    OfferResponse,
    Resolution,
    ResolveCase,
    Resolver,
    Urgency,
)

POLICY = Policy.load()
NOW = datetime(2022, 11, 22, 2, 0, tzinfo=UTC)
FULL = (Rung.field, Rung.field_widened, Rung.local, Rung.agency, Rung.duty_desk)


def facts(
    urgency: Urgency = Urgency.immediate,
    need: Need = Need.medicine,
    grade: int = 1,
    alone: bool = True,
    carer: bool = False,
    household: int = 1,
    low_income: bool = True,
) -> CaseFacts:
    return CaseFacts(
        source="12345",
        need=need,
        urgency=urgency,
        disability_category=DisabilityCategory.visual,
        disability_grade=grade,
        lives_alone=alone,
        household_disabled_count=household,
        low_income=low_income,
        has_carer=carer,
        lat=30.0,
        lon=114.0,
        division_code="420103",
        reported_at=NOW,
        received_at=NOW,
    )


def offer(n: int, rung: Rung = Rung.field) -> Offer:
    return Offer(
        offer_id=f"o{n}",
        helper_id=f"h{n}",
        kind=HelperKind.volunteer,
        name=f"h{n}",
        rung=rung,
        basis="nearby",
        offered_at=NOW,
        ack_due=NOW + timedelta(minutes=10),
    )


def test_severe_grade_alone_low_income_needing_medicine_now_is_p1_within_30_minutes() -> None:
    t = triage(facts(), POLICY.triage)
    assert t.priority == "P1"
    assert set(t.factors) == {
        "urgency_immediate",
        "severe_grade",
        "alone_without_carer",
        "low_income",
        "critical_need",
    }
    assert t.first_contact_due == NOW + timedelta(minutes=30)
    assert t.ack_window == timedelta(minutes=10)


def test_routine_job_seeking_with_a_carer_is_p4_within_three_days() -> None:
    t = triage(
        facts(Urgency.routine, Need.employment, grade=4, alone=False, carer=True, low_income=False),
        POLICY.triage,
    )
    assert t.priority == "P4"
    assert t.first_contact_due == NOW + timedelta(days=3)
    assert t.ack_window == timedelta(hours=2)


def test_priority_groups_tighten_the_first_contact_deadline_set_by_urgency() -> None:
    t = triage(facts(Urgency.within_72h, Need.medicine, household=3), POLICY.triage)
    assert t.priority == "P1"
    assert t.first_contact_due == NOW + timedelta(minutes=30)


def test_accepting_the_open_offer_accepts_the_case() -> None:
    state = offered(CaseState(CaseStatus.received, 1), offer(1))
    result, after = answer(state, "o1", OfferResponse.accept, NOW)
    assert result is Answer.accepted
    assert after.status is CaseStatus.accepted and after.offers[0].outcome == "accepted"


def test_an_answer_to_an_offer_that_is_no_longer_open_is_stale() -> None:
    state = offered(CaseState(CaseStatus.received, 1), offer(1))
    _, declined = answer(state, "o1", "timeout", NOW)
    assert declined.offers[0].outcome == "timeout"
    result, unchanged = answer(declined, "o1", OfferResponse.accept, NOW)
    assert result is Answer.stale and unchanged == declined


def test_an_answer_to_an_offer_never_made_is_stale() -> None:
    state = offered(CaseState(CaseStatus.received, 1), offer(1))
    assert answer(state, "forged", OfferResponse.accept, NOW)[0] is Answer.stale


def test_three_offers_on_a_rung_send_the_case_up_the_ladder() -> None:
    state = CaseState(CaseStatus.received, 1)
    for n in range(3):
        state = offered(state, offer(n))
        state = answer(state, f"o{n}", OfferResponse.decline, NOW)[1]
    assert state.offers_in_rung == 3
    assert list(rungs_to_try(state, FULL, 3)) == [
        Rung.field_widened,
        Rung.local,
        Rung.agency,
        Rung.duty_desk,
    ]


def test_a_rung_with_offers_left_is_tried_again_before_climbing() -> None:
    state = offered(CaseState(CaseStatus.received, 1), offer(1))
    assert next(iter(rungs_to_try(state, FULL, 3))) is Rung.field


def test_climbing_never_returns_to_a_lower_rung() -> None:
    state = offered(CaseState(CaseStatus.received, 1), offer(1, Rung.agency))
    assert list(rungs_to_try(state, FULL, 1)) == [Rung.duty_desk]


def test_escalation_puts_the_case_with_the_duty_desk() -> None:
    state = escalated(CaseState(CaseStatus.received, 1))
    assert state.status is CaseStatus.escalated and state.rung is Rung.duty_desk


def test_state_survives_a_round_trip_through_its_document() -> None:
    state = offered(CaseState(CaseStatus.received, 3), offer(1, Rung.local))
    doc = {**state.to_fields(), "version": 3}
    assert CaseState.of(doc) == state
    assert doc["offer_due"] == NOW + timedelta(minutes=10)


def accepted_state() -> CaseState:
    state = offered(CaseState(CaseStatus.received, 1), offer(1))
    return answer(state, "o1", OfferResponse.accept, NOW)[1]


@pytest.mark.parametrize(
    ("state", "by", "offer_id", "closes"),
    [
        (accepted_state(), Resolver.helper, "o1", True),
        (accepted_state(), Resolver.helper, "o2", False),
        (accepted_state(), Resolver.duty_desk, "", False),
        (offered(CaseState(CaseStatus.received, 1), offer(1)), Resolver.helper, "o1", False),
        (escalated(CaseState(CaseStatus.received, 1)), Resolver.duty_desk, "", True),
        (escalated(CaseState(CaseStatus.received, 1)), Resolver.helper, "o1", False),
        (CaseState(CaseStatus.received, 1), Resolver.duty_desk, "", False),
    ],
    ids=[
        "the helper who accepted closes the case",
        "another offer's link cannot close it",
        "the duty desk does not close a case a helper holds",
        "an offer not yet accepted cannot be closed",
        "the duty desk closes a case escalated to it",
        "a helper cannot close a case escalated to the desk",
        "a case nobody has been asked about cannot be closed",
    ],
)
def test_who_may_close_the_loop(
    state: CaseState, by: Resolver, offer_id: str, closes: bool
) -> None:
    closed = resolve(state, Resolution.helped, by, offer_id, NOW)
    assert (closed is not None) == closes
    if closed is not None:
        assert closed.status is CaseStatus.resolved
        assert closed.closing is not None and closed.closing.by is by
        assert resolve(closed, Resolution.helped, by, offer_id, NOW) is None  # once only


def test_a_resolved_case_survives_a_round_trip_through_its_document() -> None:
    closed = resolve(accepted_state(), Resolution.delivered, Resolver.helper, "o1", NOW)
    assert closed is not None
    assert CaseState.of({**closed.to_fields(), "version": 1}) == closed


def test_each_rung_the_case_comes_to_is_recorded_once_with_its_reason() -> None:
    state = climbed(CaseState(CaseStatus.received, 1), Rung.field, "start", NOW)
    state = climbed(state, Rung.field, "ignored: same rung", NOW)
    state = climbed(state, Rung.agency, "no_eligible_helper", NOW)
    state = escalated(state, "offers_exhausted", NOW)
    assert [(s.rung, s.reason) for s in state.steps] == [
        (Rung.field, "start"),
        (Rung.agency, "no_eligible_helper"),
        (Rung.duty_desk, "offers_exhausted"),
    ]
    assert CaseState.of({**state.to_fields(), "version": 1}).steps == state.steps


def test_open_cases_are_counted_by_status_and_priority_and_the_overdue_picked_out() -> None:
    due = NOW - timedelta(minutes=1)
    later = NOW + timedelta(minutes=1)
    cases: list[dict[str, Any]] = [
        {"status": "assigned", "triage": {"priority": "P1", "first_contact_due": due}},
        {"status": "assigned", "triage": {"priority": "P1", "first_contact_due": later}},
        {"status": "accepted", "triage": {"priority": "P1", "first_contact_due": due}},
        {"status": "escalated", "triage": {"priority": "P2", "first_contact_due": due}},
        {"status": "received"},
    ]
    tally = tally_open_cases(cases, NOW)
    assert tally.open == {
        ("assigned", "P1"): 2,
        ("accepted", "P1"): 1,
        ("escalated", "P2"): 1,
        ("received", "none"): 1,
    }
    assert tally.overdue == {"P1": 1, "P2": 1}


def test_a_helper_closing_a_case_must_name_the_offer_they_accepted() -> None:
    with pytest.raises(ValidationError, match="offer_id"):
        ResolveCase.model_validate({"case_id": "c1", "resolution": "helped"})
    with pytest.raises(ValidationError, match="resolution"):
        ResolveCase.model_validate({"case_id": "c1", "resolution": "sorted", "offer_id": "o1"})
    desk = ResolveCase.model_validate(
        {"case_id": "c1", "resolution": "referred", "by": "duty_desk"}
    )
    assert desk.by is Resolver.duty_desk
