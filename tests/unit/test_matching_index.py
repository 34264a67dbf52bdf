"""The in-process helper index: it hands over exactly who can reach a case, nearest first, and
the ranking it feeds is the ranking of a scan over every helper."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.matching.domain import Helper, Person, Rung, Window, decide, distance_km
from services.matching.index import KEEP_PASSED_OVER, HelperIndex
from services.matching.policy import Policy
from shared.contracts import CaseFacts, DisabilityCategory, HelperKind, Need, Urgency

POLICY = Policy.load()
NOW = datetime(2022, 11, 22, 2, 0, tzinfo=UTC)
CENTRE = (30.59, 114.30)
SKILLS = ("sign_language", "guiding", "driving", "counselling")
HOURS = (
    (),
    (Window(frozenset(range(1, 6)), 8 * 60, 18 * 60),),
    (Window(frozenset({6, 7}), 0, 1440),),
)


def random_volunteers(rng: random.Random, n: int, spread_km: float = 20.0) -> list[Helper]:
    return [
        Helper(
            id=f"v{i:04d}",
            kind=HelperKind.volunteer,
            name=f"v{i}",
            active=rng.random() < 0.9,
            lat=CENTRE[0] + rng.uniform(-spread_km, spread_km) / 111.2,
            lon=CENTRE[1] + rng.uniform(-spread_km, spread_km) / 96.0,
            radius_km=rng.choice([0.5, 1, 2, 3, 5, 8, 15]),
            capacity=(capacity := rng.randint(1, 4)),
            load=rng.randint(0, capacity),
            skills=frozenset(s for s in SKILLS if rng.random() < 0.3),
            needs=frozenset({Need.food}) if rng.random() < 0.2 else frozenset(),
            hours=rng.choice(HOURS),
            offers=(offers := rng.randint(0, 20)),
            accepts=rng.randint(0, offers),
        )
        for i in range(n)
    ]


def facts_at(lat: float, lon: float, need: Need, category: DisabilityCategory) -> CaseFacts:
    return CaseFacts(
        source="t",
        need=need,
        urgency=Urgency.immediate,
        disability_category=category,
        disability_grade=2,
        lives_alone=True,
        household_disabled_count=1,
        low_income=False,
        has_carer=False,
        lat=lat,
        lon=lon,
        division_code="420103",
        reported_at=NOW,
        received_at=NOW,
    )


@pytest.mark.parametrize("widen", [1.0, 2.0])
def test_nearby_hands_over_everyone_whose_radius_reaches_the_point_nearest_first(
    widen: float,
) -> None:
    rng = random.Random(11)
    helpers = random_volunteers(rng, 3000)
    index = HelperIndex()
    index.build(helpers)
    for _ in range(40):
        lat = CENTRE[0] + rng.uniform(-0.2, 0.2)
        lon = CENTRE[1] + rng.uniform(-0.2, 0.2)
        found = list(index.nearby(lat, lon, widen))
        distances = [distance_km(lat, lon, h.lat or 0, h.lon or 0) for h in found]
        assert distances == sorted(distances)
        reachable = {
            h.id
            for h in helpers
            if distance_km(lat, lon, h.lat or 0, h.lon or 0) <= h.radius_km * widen
        }
        open_ones = {h.id for h in helpers if h.active and h.has_capacity} & reachable
        assert open_ones <= {h.id for h in found} <= reachable
        passed_over = [h for h in found if not (h.active and h.has_capacity)]
        assert len(passed_over) == min(KEEP_PASSED_OVER, len(reachable - open_ones))


def test_ranking_fed_by_the_index_equals_ranking_every_helper() -> None:
    rng = random.Random(5)
    helpers = random_volunteers(rng, 4000)
    index = HelperIndex()
    index.build(helpers)
    needs = [Need.medicine, Need.food, Need.medical_care, Need.psychological_support]
    examined = {"fed": 0, "scan": 0}
    for n in range(120):
        facts = facts_at(
            CENTRE[0] + rng.uniform(-0.15, 0.15),
            CENTRE[1] + rng.uniform(-0.15, 0.15),
            rng.choice(needs),
            rng.choice(list(DisabilityCategory)),
        )
        rung = Rung.field_widened if n % 4 == 0 else Rung.field
        now = NOW + timedelta(hours=rng.randint(0, 167))
        person = Person(previous_helper_id=rng.choice(helpers).id if n % 5 == 0 else None)
        scan = decide(facts, helpers, POLICY, now, rung, person)
        fed = decide(
            facts,
            index.pool(facts, rung, person, POLICY, now),
            POLICY,
            now,
            rung,
            person,
            nearest_first=True,
        )
        assert [(c.helper.id, c.score) for c in fed.candidates] == [
            (c.helper.id, c.score) for c in scan.candidates
        ]
        examined["fed"] += fed.considered
        examined["scan"] += scan.considered
    assert examined["fed"] < examined["scan"] / 3  # it stopped early, and still agreed


def test_a_county_agency_serves_every_township_and_village_under_it() -> None:
    index = HelperIndex()
    index.build(
        [
            Helper(id="county", kind=HelperKind.agency, name="c", divisions=("420103",)),
            Helper(id="city", kind=HelperKind.agency, name="c", divisions=("420100",)),
            Helper(id="other", kind=HelperKind.agency, name="o", divisions=("420106",)),
            Helper(id="grid", kind=HelperKind.community_worker, name="g", divisions=("420103001",)),
        ]
    )
    assert {h.id for h in index.serving("420103001002", HelperKind.agency)} == {"county", "city"}
    assert {h.id for h in index.serving("420106", HelperKind.agency)} == {"city", "other"}
    assert [h.id for h in index.serving("420103001002", HelperKind.community_worker)] == ["grid"]
    assert index.serving("420103002", HelperKind.community_worker) == []


def test_a_helper_who_moves_is_found_where_they_now_live() -> None:
    near = Helper(id="v", kind=HelperKind.volunteer, name="v", lat=CENTRE[0], lon=CENTRE[1])
    index = HelperIndex()
    index.build([near])
    index.upsert(replace(near, lat=CENTRE[0] + 1.0))
    assert list(index.nearby(CENTRE[0], CENTRE[1])) == []
    assert [h.id for h in index.nearby(CENTRE[0] + 1.0, CENTRE[1])] == ["v"]
    index.upsert(Helper(id="w", kind=HelperKind.volunteer, name="w", lat=CENTRE[0], lon=CENTRE[1]))
    assert [h.id for h in index.nearby(CENTRE[0], CENTRE[1])] == ["w"]


def test_a_helper_whose_capacity_is_claimed_is_passed_over_once_enough_others_are() -> None:
    helpers = [
        Helper(
            id=f"v{i:02d}",
            kind=HelperKind.volunteer,
            name="v",
            lat=CENTRE[0] + i / 1000,
            lon=CENTRE[1],
            capacity=1,
        )
        for i in range(KEEP_PASSED_OVER + 5)
    ]
    index = HelperIndex()
    index.build(helpers)
    for helper in helpers[:-1]:
        index.adjust_load(helper.id, +1)
    found = [h.id for h in index.nearby(CENTRE[0], CENTRE[1])]
    assert found == [h.id for h in helpers[:KEEP_PASSED_OVER]] + [helpers[-1].id]
    index.mark_full(helpers[-1].id)
    index.adjust_load(helpers[0].id, -1)
    assert helpers[-1].id not in [h.id for h in index.nearby(CENTRE[0], CENTRE[1])]


def test_the_index_knows_which_people_have_links_without_asking_the_store() -> None:
    index = HelperIndex()
    index.set_people(["paired"])
    assert index.knows_person("paired") and not index.knows_person("stranger")
    index.remember_person("stranger")
    assert index.knows_person("stranger")
    index.build([])
    assert index.knows_person("paired")
