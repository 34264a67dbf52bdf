"""The matching choice as pure functions: who may go, and in what order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.matching.domain import (
    Exclusion,
    Helper,
    covers,
    decide,
    distance_km,
    duty_desk_for,
    required_skills,
)
from services.matching.policy import Policy
from shared.contracts import CaseFacts, DisabilityCategory, HelperKind, Need, Urgency

POLICY = Policy.load()
HOME = (30.5801, 114.2734)  # 江汉区
NOW = datetime(2022, 11, 22, 8, 0, tzinfo=UTC)


def facts(
    need: Need = Need.medicine,
    category: DisabilityCategory = DisabilityCategory.physical,
    grade: int = 3,
    division: str = "420103001",
) -> CaseFacts:
    return CaseFacts(
        source="12345-wuhan",
        need=need,
        urgency=Urgency.immediate,
        disability_category=category,
        disability_grade=grade,
        lives_alone=True,
        household_disabled_count=1,
        low_income=False,
        has_carer=False,
        lat=HOME[0],
        lon=HOME[1],
        division_code=division,
        reported_at=NOW,
        received_at=NOW,
    )


def volunteer(
    id: str,
    km_north: float,
    *,
    radius: float = 5,
    capacity: int = 2,
    load: int = 0,
    skills: tuple[str, ...] = (),
    active: bool = True,
) -> Helper:
    return Helper(
        id=id,
        kind=HelperKind.volunteer,
        name=id,
        active=active,
        lat=HOME[0] + km_north / 111.2,
        lon=HOME[1],
        radius_km=radius,
        capacity=capacity,
        load=load,
        skills=frozenset(skills),
    )


def agency(id: str, needs: tuple[Need, ...], divisions: tuple[str, ...]) -> Helper:
    return Helper(
        id=id,
        kind=HelperKind.agency,
        name=id,
        capacity=1000,
        needs=frozenset(needs),
        divisions=divisions,
    )


def test_nearest_volunteer_with_capacity_comes_first() -> None:
    decision = decide(facts(), [volunteer("far", 3.0), volunteer("near", 1.0)], POLICY)
    assert [c.helper.id for c in decision.candidates] == ["near", "far"]
    assert decision.candidates[0].distance_km == pytest.approx(1.0, abs=0.01)


def test_volunteer_at_capacity_is_excluded_with_a_reason() -> None:
    decision = decide(
        facts(), [volunteer("full", 0.5, capacity=2, load=2), volunteer("free", 2.0)], POLICY
    )
    assert [c.helper.id for c in decision.candidates] == ["free"]
    assert ("full", Exclusion.at_capacity) in decision.excluded


def test_volunteer_beyond_their_travel_radius_is_not_a_candidate() -> None:
    decision = decide(facts(), [volunteer("homebody", 3.0, radius=2.0)], POLICY)
    assert decision.candidates == ()


def test_inactive_volunteer_is_excluded() -> None:
    decision = decide(facts(), [volunteer("resting", 0.2, active=False)], POLICY)
    assert decision.candidates == ()
    assert ("resting", Exclusion.inactive) in decision.excluded


def test_subsidy_request_goes_to_the_civil_affairs_agency_of_that_district() -> None:
    helpers = [
        volunteer("vol", 0.1),
        agency("mzj-jianghan", (Need.benefits,), ("420103",)),
        agency("mzj-wuchang", (Need.benefits,), ("420106",)),
        agency("health", (Need.medicine,), ("420100",)),
    ]
    decision = decide(facts(need=Need.benefits), helpers, POLICY)
    assert [c.helper.id for c in decision.candidates] == ["mzj-jianghan"]


def test_the_most_local_agency_wins_over_a_city_wide_one() -> None:
    helpers = [
        agency("city", (Need.benefits,), ("420100",)),
        agency("district", (Need.benefits,), ("420103",)),
    ]
    decision = decide(facts(need=Need.benefits), helpers, POLICY)
    assert [c.helper.id for c in decision.candidates] == ["district", "city"]


def test_agencies_follow_volunteers_when_the_need_allows_both() -> None:
    helpers = [agency("health", (Need.medicine,), ("420100",)), volunteer("vol", 2.0)]
    decision = decide(facts(need=Need.medicine), helpers, POLICY)
    assert [c.helper.id for c in decision.candidates] == ["vol", "health"]


def test_deaf_person_going_to_a_doctor_gets_only_sign_language_volunteers() -> None:
    helpers = [volunteer("speaks", 0.5), volunteer("signs", 2.5, skills=("sign_language",))]
    decision = decide(
        facts(need=Need.medical_care, category=DisabilityCategory.hearing), helpers, POLICY
    )
    assert [c.helper.id for c in decision.candidates if c.helper.kind is HelperKind.volunteer] == [
        "signs"
    ]
    assert ("speaks", Exclusion.missing_skill) in decision.excluded


def test_deaf_person_needing_food_delivered_needs_no_sign_language() -> None:
    assert (
        required_skills(facts(need=Need.food, category=DisabilityCategory.hearing), POLICY)
        == frozenset()
    )


def test_wheelchair_user_going_to_hospital_needs_an_accessible_vehicle() -> None:
    skills = required_skills(facts(need=Need.medical_care, grade=1), POLICY)
    assert skills == {"wheelchair_vehicle"}


def test_legal_aid_needs_a_volunteer_with_legal_skills() -> None:
    decision = decide(
        facts(need=Need.legal_aid),
        [volunteer("lawyer", 4.0, skills=("legal",)), volunteer("kind", 0.1)],
        POLICY,
    )
    assert [c.helper.id for c in decision.candidates] == ["lawyer"]


def test_city_code_covers_its_districts_and_villages_but_not_other_cities() -> None:
    assert covers("420100", "420103")
    assert covers("420100", "420103001002")
    assert covers("420103", "420103001")
    assert not covers("420103", "420106")
    assert not covers("420100", "420200")


def test_duty_desk_of_the_city_is_found_for_a_village() -> None:
    desks = [
        Helper(id="prov", kind=HelperKind.duty_desk, name="p", divisions=("420000",)),
        Helper(id="city", kind=HelperKind.duty_desk, name="c", divisions=("420100",)),
    ]
    desk = duty_desk_for("420103001002", desks)
    assert desk is not None and desk.id == "city"


def test_distance_is_great_circle_kilometres() -> None:
    assert distance_km(30.0, 114.0, 31.0, 114.0) == pytest.approx(111.2, abs=0.1)


def test_every_need_has_a_routing_entry_in_the_policy() -> None:
    assert set(POLICY.kinds_for_need) == set(Need)
