"""The matching choice as pure functions: who may go, and in what order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.matching.domain import (
    Basis,
    Exclusion,
    Helper,
    Person,
    Rung,
    Window,
    contact_via_carer,
    covers,
    decide,
    distance_km,
    duty_desk_for,
    required_skills,
    rungs_for,
)
from services.matching.policy import Policy
from shared.contracts import CaseFacts, DisabilityCategory, HelperKind, Need, Urgency

POLICY = Policy.load()
HOME = (30.5801, 114.2734)  # 江汉区
NOW = datetime(2022, 11, 22, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Wuhan


def facts(
    need: Need = Need.medicine,
    category: DisabilityCategory = DisabilityCategory.physical,
    grade: int = 3,
    division: str = "420103001",
    **more: Any,
) -> CaseFacts:
    values: dict[str, Any] = dict(
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
        person_key="p1",
    )
    return CaseFacts(**(values | more))


def volunteer(
    id: str,
    km_north: float,
    *,
    radius: float = 5,
    capacity: int = 2,
    load: int = 0,
    skills: tuple[str, ...] = (),
    active: bool = True,
    hours: tuple[Window, ...] = (),
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
        hours=hours,
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


def cadre(id: str) -> Helper:
    return Helper(id=id, kind=HelperKind.paired_cadre, name=id, capacity=5)


def ids(helpers: Any) -> list[str]:
    return [c.helper.id for c in helpers.candidates]


def test_nearest_volunteer_with_capacity_comes_first() -> None:
    decision = decide(facts(), [volunteer("far", 3.0), volunteer("near", 1.0)], POLICY, NOW)
    assert ids(decision) == ["near", "far"]
    assert decision.candidates[0].distance_km == pytest.approx(1.0, abs=0.01)


def test_blind_person_alone_in_lockdown_gets_the_nearest_volunteer_still_on_duty() -> None:
    mornings = (Window(frozenset(range(1, 8)), 6 * 60, 9 * 60),)  # 06:00-09:00, over by 10:00
    helpers = [
        volunteer("hours-over", 0.3, hours=mornings),
        volunteer("on-duty", 1.2),
        volunteer("full", 0.5, capacity=1, load=1),
    ]
    blind = facts(Need.medicine, DisabilityCategory.visual, grade=1)
    decision = decide(blind, helpers, POLICY, NOW)
    assert ids(decision) == ["on-duty"]
    assert ("hours-over", Exclusion.off_duty) in decision.excluded
    assert ("full", Exclusion.at_capacity) in decision.excluded


def test_overnight_hours_span_midnight() -> None:
    nights = Window(frozenset(range(1, 8)), 22 * 60, 6 * 60)
    assert nights.contains(datetime(2022, 11, 22, 23, 30))
    assert nights.contains(datetime(2022, 11, 22, 5, 0))
    assert not nights.contains(datetime(2022, 11, 22, 12, 0))


def test_volunteer_beyond_their_travel_radius_is_not_a_candidate() -> None:
    decision = decide(facts(), [volunteer("homebody", 3.0, radius=2.0)], POLICY, NOW)
    assert decision.candidates == ()


def test_widened_rung_reaches_volunteers_just_beyond_their_radius() -> None:
    helpers = [volunteer("homebody", 3.0, radius=2.0)]
    assert ids(decide(facts(), helpers, POLICY, NOW, Rung.field_widened)) == ["homebody"]


def test_inactive_volunteer_is_excluded() -> None:
    decision = decide(facts(), [volunteer("resting", 0.2, active=False)], POLICY, NOW)
    assert decision.candidates == ()
    assert ("resting", Exclusion.inactive) in decision.excluded


def test_paired_cadre_wins_over_nearer_volunteer() -> None:
    helpers = [volunteer("next-door", 0.1), cadre("cadre-li")]
    decision = decide(facts(), helpers, POLICY, NOW, person=Person(frozenset({"cadre-li"})))
    assert ids(decision) == ["cadre-li", "next-door"]
    assert decision.candidates[0].basis is Basis.paired_cadre


def test_a_cadre_paired_with_someone_else_is_not_offered() -> None:
    decision = decide(facts(), [cadre("cadre-wang")], POLICY, NOW, person=Person())
    assert decision.candidates == ()


def test_previous_helper_of_this_person_comes_before_nearer_strangers() -> None:
    helpers = [volunteer("stranger", 0.2), volunteer("known", 2.5)]
    decision = decide(facts(), helpers, POLICY, NOW, person=Person(previous_helper_id="known"))
    assert ids(decision) == ["known", "stranger"]


def test_work_is_spread_to_the_less_loaded_of_two_equally_near_volunteers() -> None:
    helpers = [volunteer("busy", 1.0, capacity=3, load=2), volunteer("idle", 1.0, capacity=3)]
    assert ids(decide(facts(), helpers, POLICY, NOW)) == ["idle", "busy"]


def test_reliable_volunteer_ranks_above_one_who_rarely_answers() -> None:
    steady = replace(volunteer("steady", 1.0), offers=10, accepts=9)
    flaky = replace(volunteer("flaky", 1.0), offers=10, accepts=1)
    assert ids(decide(facts(), [flaky, steady], POLICY, NOW)) == ["steady", "flaky"]


def test_already_offered_helpers_are_not_asked_again() -> None:
    decision = decide(
        facts(),
        [volunteer("declined", 0.5), volunteer("next", 1.0)],
        POLICY,
        NOW,
        offered=frozenset({"declined"}),
    )
    assert ids(decision) == ["next"]
    assert ("declined", Exclusion.already_offered) in decision.excluded


def test_low_income_family_needing_dibao_goes_to_civil_affairs_of_that_county() -> None:
    helpers = [
        volunteer("vol", 0.1),
        agency("mzj-jianghan", (Need.benefits,), ("420103",)),
        agency("mzj-wuchang", (Need.benefits,), ("420106",)),
        agency("health", (Need.medicine,), ("420100",)),
    ]
    family = facts(Need.benefits, low_income=True, household_disabled_count=2)
    assert rungs_for(Need.benefits, POLICY) == (Rung.field, Rung.local, Rung.agency, Rung.duty_desk)
    assert ids(decide(family, helpers, POLICY, NOW, Rung.field)) == []
    assert ids(decide(family, helpers, POLICY, NOW, Rung.agency)) == ["mzj-jianghan"]


def test_the_most_local_agency_wins_over_a_city_wide_one() -> None:
    helpers = [
        agency("city", (Need.benefits,), ("420100",)),
        agency("district", (Need.benefits,), ("420103",)),
    ]
    decision = decide(facts(need=Need.benefits), helpers, POLICY, NOW, Rung.agency)
    assert ids(decision) == ["district", "city"]


def test_community_worker_of_the_village_serves_on_the_local_rung() -> None:
    worker = Helper(
        id="grid-7",
        kind=HelperKind.community_worker,
        name="网格员",
        divisions=("420103001",),
        capacity=5,
    )
    other = Helper(
        id="grid-9",
        kind=HelperKind.community_worker,
        name="网格员",
        divisions=("420106002",),
        capacity=5,
    )
    decision = decide(facts(), [worker, other], POLICY, NOW, Rung.local)
    assert ids(decision) == ["grid-7"]


def test_deaf_person_going_to_a_doctor_gets_only_sign_language_volunteers() -> None:
    helpers = [volunteer("speaks", 0.5), volunteer("signs", 2.5, skills=("sign_language",))]
    deaf = facts(need=Need.medical_care, category=DisabilityCategory.hearing)
    decision = decide(deaf, helpers, POLICY, NOW)
    assert ids(decision) == ["signs"]
    assert ("speaks", Exclusion.missing_skill) in decision.excluded


def test_deaf_person_needing_food_delivered_needs_no_sign_language() -> None:
    deaf = facts(need=Need.food, category=DisabilityCategory.hearing)
    assert required_skills(deaf, POLICY) == frozenset()


def test_blind_person_escorted_to_hospital_needs_a_guide() -> None:
    blind = facts(need=Need.medical_care, category=DisabilityCategory.visual)
    assert required_skills(blind, POLICY) == {"guiding"}


def test_wheelchair_user_going_to_hospital_needs_an_accessible_vehicle() -> None:
    assert required_skills(facts(need=Need.medical_care, grade=1), POLICY) == {"wheelchair_vehicle"}


def test_legal_aid_needs_a_volunteer_with_legal_skills() -> None:
    decision = decide(
        facts(need=Need.legal_aid),
        [volunteer("lawyer", 4.0, skills=("legal",)), volunteer("kind", 0.1)],
        POLICY,
        NOW,
    )
    assert ids(decision) == ["lawyer"]


def test_contact_goes_through_the_carer_for_intellectual_disability() -> None:
    assert contact_via_carer(
        facts(category=DisabilityCategory.intellectual, has_carer=True), POLICY
    )
    assert not contact_via_carer(facts(category=DisabilityCategory.intellectual), POLICY)
    assert not contact_via_carer(facts(has_carer=True), POLICY)


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
