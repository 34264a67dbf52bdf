"""The seeds' scenarios, as a duty officer would put them, through the real index and ranking
(pure), then through the matching use cases over in-memory stores."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.matching.domain import (
    Exclusion,
    Helper,
    Person,
    Rung,
    Window,
    decide,
)
from services.matching.index import HelperIndex
from services.matching.lifecycle import Answer
from services.matching.policy import Policy
from shared.contracts import (
    CaseAssigned,
    CaseDeclined,
    CaseEscalated,
    CaseFacts,
    CaseResolved,
    DisabilityCategory,
    HardshipReported,
    HelperKind,
    HelperRecord,
    Need,
    OfferAnswer,
    OfferResponse,
    Resolution,
    ResolveCase,
    Resolver,
    Urgency,
)
from shared.storage import Document
from tests.unit.matching_fakes import HOME, KM, World, report, volunteer_record

POLICY = Policy.load()
NOW = datetime(2022, 11, 22, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Wuhan
MORNINGS = (Window(frozenset(range(1, 8)), 6 * 60, 9 * 60),)  # 06:00-09:00: over by 10:00


def volunteer(id: str, km_north: float, **more: Any) -> Helper:
    values: dict[str, Any] = dict(
        id=id,
        kind=HelperKind.volunteer,
        name=id,
        lat=HOME[0] + km_north * KM,
        lon=HOME[1],
        radius_km=5.0,
        capacity=2,
    )
    return Helper(**(values | more))


def agency(id: str, needs: tuple[Need, ...], divisions: tuple[str, ...]) -> Helper:
    return Helper(
        id=id,
        kind=HelperKind.agency,
        name=id,
        capacity=1000,
        needs=frozenset(needs),
        divisions=divisions,
    )


def case(need: Need, category: DisabilityCategory, grade: int, **more: Any) -> CaseFacts:
    values: dict[str, Any] = dict(
        source="12345-wuhan",
        need=need,
        urgency=Urgency.immediate,
        disability_category=category,
        disability_grade=grade,
        lives_alone=False,
        household_disabled_count=1,
        low_income=False,
        has_carer=False,
        lat=HOME[0],
        lon=HOME[1],
        division_code="420103",
        reported_at=NOW,
        received_at=NOW,
        person_key="p1",
    )
    return CaseFacts(**(values | more))


@dataclass(frozen=True)
class Scenario:
    facts: CaseFacts
    helpers: list[Helper]
    expected: list[str]
    rung: Rung = Rung.field
    person: Person = field(default_factory=Person)
    excluded: set[tuple[str, Exclusion]] = field(default_factory=set)


SCENARIOS = {
    "blind grade-1 person alone in lockdown needing medicine gets the nearest volunteer "
    "still on duty with capacity": Scenario(
        case(Need.medicine, DisabilityCategory.visual, 1, lives_alone=True),
        [
            volunteer("hours-over", 0.3, hours=MORNINGS),
            volunteer("full", 0.5, capacity=1, load=1),
            volunteer("on-duty", 1.2),
            volunteer("further", 2.5),
        ],
        ["on-duty", "further"],
        excluded={("hours-over", Exclusion.off_duty), ("full", Exclusion.at_capacity)},
    ),
    "deaf person needing a doctor escort gets only sign-language volunteers": Scenario(
        case(Need.medical_care, DisabilityCategory.hearing, 2),
        [
            volunteer("speaks", 0.4),
            volunteer("signs-far", 3.0, skills=frozenset({"sign_language"})),
            volunteer("signs-near", 1.0, skills=frozenset({"sign_language", "driving"})),
        ],
        ["signs-near", "signs-far"],
        excluded={("speaks", Exclusion.missing_skill)},
    ),
    "low-income family needing 低保 goes to the civil-affairs agency of its county, which "
    "serves the village code under it": Scenario(
        case(
            Need.benefits,
            DisabilityCategory.physical,
            2,
            low_income=True,
            household_disabled_count=2,
            division_code="420103001002",
        ),
        [
            volunteer("vol", 0.1),
            agency("mzj-jianghan", (Need.benefits, Need.housing), ("420103",)),
            agency("mzj-wuchang", (Need.benefits,), ("420106",)),
            agency("rehab-city", (Need.rehabilitation,), ("420100",)),
        ],
        ["mzj-jianghan"],
        rung=Rung.agency,
    ),
    "the paired cadre wins over a nearer volunteer": Scenario(
        case(Need.food, DisabilityCategory.physical, 1),
        [
            volunteer("next-door", 0.1),
            Helper(id="cadre-li", kind=HelperKind.paired_cadre, name="李干部", capacity=5),
            Helper(id="cadre-wang", kind=HelperKind.paired_cadre, name="王干部", capacity=5),
        ],
        ["cadre-li", "next-door"],
        person=Person(paired_cadre_ids=frozenset({"cadre-li"})),
    ),
    "the person's previous helper comes before nearer strangers": Scenario(
        case(Need.food, DisabilityCategory.physical, 3),
        [volunteer("stranger", 0.2), volunteer("known", 4.0)],
        ["known", "stranger"],
        person=Person(previous_helper_id="known"),
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=list(SCENARIOS))
def test_scenario(scenario: Scenario) -> None:
    index = HelperIndex()
    index.build(scenario.helpers)
    pool = index.pool(scenario.facts, scenario.rung, scenario.person, POLICY, NOW)
    decision = decide(
        scenario.facts,
        pool,
        POLICY,
        NOW,
        scenario.rung,
        scenario.person,
        nearest_first=True,
    )
    assert [c.helper.id for c in decision.candidates] == scenario.expected
    assert scenario.excluded <= set(decision.excluded)


# ---------------------------------------------------------------- through the use cases

DESK = HelperRecord(
    id="desk", kind=HelperKind.duty_desk, name="武汉市残联值班室", divisions=["420100"]
)
PHARMACY_AGENCY = HelperRecord(
    id="health-jianghan",
    kind=HelperKind.agency,
    name="江汉区卫健局",
    needs=[Need.medicine],
    divisions=["420103"],
    capacity=100,
)


async def started(records: list[HelperRecord], **people: Person) -> World:
    world = World(records, people)
    await world.matching.refresh_index()
    return world


def decline(world: World, event: HardshipReported) -> OfferAnswer:
    offer = world.events(CaseAssigned)[-1]
    return OfferAnswer(
        case_id=event.case_id, offer_id=offer.offer_id, response=OfferResponse.decline
    )


async def test_three_declines_climb_to_the_agency_then_the_duty_desk() -> None:
    volunteers = [volunteer_record(f"v{n}", n * 0.5 + 0.5) for n in range(3)]
    world = await started([*volunteers, PHARMACY_AGENCY, DESK])
    event = report(world, need="medicine")
    await world.matching.on_reported(event)
    for _ in range(3):
        assert await world.matching.answer(decline(world, event)) is Answer.declined
    offered = [e.helper.helper_id for e in world.events(CaseAssigned)]
    assert offered == ["v0", "v1", "v2", "health-jianghan"]
    assert await world.matching.answer(decline(world, event)) is Answer.declined
    [escalated] = world.events(CaseEscalated)
    assert escalated.helper.helper_id == "desk"
    assert escalated.reason == "offers_exhausted"
    case = world.cases.docs[event.case_id]
    assert [(s["rung"], s["reason"]) for s in case["ladder"]["steps"]] == [
        ("field", "start"),
        ("field_widened", "offers_exhausted"),
        ("local", "no_eligible_helper"),
        ("agency", "no_eligible_helper"),
        ("duty_desk", "offers_exhausted"),
    ]
    assert all(h["load"] == 0 for h in world.helpers.docs.values())


async def test_an_offer_nobody_answers_times_out_after_its_window_and_goes_to_the_next() -> None:
    world = await started([volunteer_record("near", 0.5), volunteer_record("next", 1.5), DESK])
    event = report(world)
    await world.matching.on_reported(event)
    [first] = world.events(CaseAssigned)
    assert first.ack_due is not None
    window = first.ack_due - world.clock()
    assert window == timedelta(minutes=10)  # a P1 case
    world.clock.advance(minutes=9)
    assert await world.matching.sweep_timeouts() == 0
    world.clock.advance(minutes=2)
    assert await world.matching.sweep_timeouts() == 1
    [declined] = world.events(CaseDeclined)
    assert declined.reason == "timeout"
    assert [e.helper.helper_id for e in world.events(CaseAssigned)] == ["near", "next"]
    assert world.helpers.docs["near"]["load"] == 0


async def test_the_helper_who_accepted_resolves_the_case_and_their_capacity_is_released() -> None:
    world = await started([volunteer_record("near", 0.5), DESK])
    event = report(world)
    await world.matching.on_reported(event)
    [offer] = world.events(CaseAssigned)
    accept = OfferAnswer(
        case_id=event.case_id,
        offer_id=offer.offer_id,
        response=OfferResponse.accept,
    )
    assert await world.matching.answer(accept) is Answer.accepted
    assert world.helpers.docs["near"]["load"] == 1
    close = ResolveCase(
        case_id=event.case_id,
        resolution=Resolution.delivered,
        offer_id=offer.offer_id,
    )
    assert await world.matching.resolve(close)
    assert not await world.matching.resolve(close)  # once only
    [resolved] = world.events(CaseResolved)
    assert resolved.resolution is Resolution.delivered
    assert (resolved.source, resolved.external_id) == (event.source, event.external_id)
    case = world.cases.docs[event.case_id]
    assert case["status"] == "resolved"
    assert case["resolution"]["helper_id"] == "near"
    assert case["timeline"][-1]["status"] == "resolved"
    assert world.helpers.docs["near"]["load"] == 0


async def test_a_case_not_yet_accepted_cannot_be_resolved_by_the_helper_offered_it() -> None:
    world = await started([volunteer_record("near", 0.5), DESK])
    event = report(world)
    await world.matching.on_reported(event)
    [offer] = world.events(CaseAssigned)
    close = ResolveCase(
        case_id=event.case_id,
        resolution=Resolution.helped,
        offer_id=offer.offer_id,
    )
    assert not await world.matching.resolve(close)
    assert world.cases.docs[event.case_id]["status"] == "assigned"
    assert world.events(CaseResolved) == []


async def test_the_duty_desk_resolves_a_case_escalated_to_it() -> None:
    world = await started([DESK])
    event = report(world)
    await world.matching.on_reported(event)
    close = ResolveCase(
        case_id=event.case_id, resolution=Resolution.referred, by=Resolver.duty_desk
    )
    assert await world.matching.resolve(close)
    [resolved] = world.events(CaseResolved)
    assert resolved.by is Resolver.duty_desk
    assert resolved.helper is not None and resolved.helper.helper_id == "desk"


async def test_a_new_case_for_a_person_nobody_knows_costs_one_claim_and_one_case_update() -> None:
    world = await started([volunteer_record("near", 0.5), DESK])
    event = report(world)
    world.calls.counts.clear()
    await world.matching.on_reported(event)
    assert dict(world.calls.counts) == {"helpers.claim": 1, "cases.apply": 1}


async def test_a_person_with_a_paired_cadre_is_looked_up_and_the_cadre_asked_first() -> None:
    cadre = HelperRecord(id="cadre-li", kind=HelperKind.paired_cadre, name="李干部")
    world = World([volunteer_record("near", 0.1), cadre, DESK])
    event = report(world)
    world.people.links[event.facts.person_key] = Person(paired_cadre_ids=frozenset({"cadre-li"}))
    await world.matching.refresh_index()
    world.calls.counts.clear()
    await world.matching.on_reported(event)
    assert world.calls.counts["people.get"] == 1
    [offer] = world.events(CaseAssigned)
    assert offer.helper.helper_id == "cadre-li"


async def test_a_redelivered_report_claims_nothing_more_and_repeats_the_same_offer() -> None:
    world = await started([volunteer_record("near", 0.5), volunteer_record("next", 1.0), DESK])
    event = report(world)
    await world.matching.on_reported(event)
    await world.matching.on_reported(event)
    first, again = world.events(CaseAssigned)
    assert first.event_id == again.event_id
    assert sum(h["load"] for h in world.helpers.docs.values()) == 1


async def test_a_case_nobody_has_accepted_counts_as_overdue_once_its_first_contact_is_due() -> None:
    world = await started([volunteer_record("near", 0.5), DESK])
    await world.matching.on_reported(report(world))

    def gauge(name: str, **labels: str) -> float | None:
        return world.metrics_registry.get_sample_value(name, labels)

    await world.matching.count_open_cases()
    assert gauge("carerelay_matching_open_cases", status="assigned", priority="P1") == 1
    assert gauge("carerelay_matching_open_cases", status="escalated", priority="P4") == 0
    assert gauge("carerelay_matching_first_contact_overdue", priority="P1") == 0
    world.clock.advance(minutes=31)  # a P1 case: first contact within 30 minutes
    await world.matching.count_open_cases()
    assert gauge("carerelay_matching_first_contact_overdue", priority="P1") == 1


GRACE = timedelta(minutes=5)


async def test_capacity_held_by_a_replica_that_died_mid_decision_is_given_back() -> None:
    world = await started([volunteer_record("near", 0.5), volunteer_record("far", 3.0), DESK])
    event = report(world)
    await world.helpers.claim("far", event.case_id, 2)  # the dead replica's claim
    await world.matching.on_reported(event)  # the redelivery chose "near"
    assert world.helpers.docs["far"]["load"] == 1
    assert await world.matching.reconcile_claims(GRACE) == 0, "first sighting: only suspected"
    world.clock.advance(minutes=5)
    assert await world.matching.reconcile_claims(GRACE) == 1
    assert (world.helpers.docs["far"]["load"], world.helpers.docs["far"]["case_ids"]) == (0, [])
    assert world.helpers.docs["near"]["case_ids"] == [event.case_id], "the real offer keeps it"


async def test_a_claim_for_a_case_not_yet_decided_is_never_given_back() -> None:
    world = await started([volunteer_record("near", 0.5), DESK])
    event = report(world)
    await world.helpers.claim("near", event.case_id, 2)  # decision in flight
    for _ in range(3):
        assert await world.matching.reconcile_claims(GRACE) == 0
        world.clock.advance(minutes=10)
    assert world.helpers.docs["near"]["load"] == 1


async def test_a_case_that_moved_between_two_passes_is_looked_at_afresh() -> None:
    world = await started([volunteer_record("near", 0.5), volunteer_record("far", 3.0), DESK])
    event = report(world)
    await world.helpers.claim("far", event.case_id, 2)
    await world.matching.on_reported(event)
    await world.matching.reconcile_claims(GRACE)
    world.cases.docs[event.case_id]["version"] += 1  # e.g. the offer was just answered
    world.clock.advance(minutes=5)
    assert await world.matching.reconcile_claims(GRACE) == 0, "changed since: suspect anew"
    world.clock.advance(minutes=5)
    assert await world.matching.reconcile_claims(GRACE) == 1


async def test_two_deliveries_racing_share_one_claim_and_the_loser_leaves_it_held() -> None:
    world = await started([volunteer_record("near", 0.5), DESK])
    event = report(world)
    store_apply, gate, first = world.cases.apply, asyncio.Event(), asyncio.Event()

    async def stalled_apply(case_id: str, version: int, update: Document) -> bool:
        if not first.is_set():  # the first delivery stalls between its claim and its write
            first.set()
            await gate.wait()
        return await store_apply(case_id, version, update)

    world.cases.apply = stalled_apply  # type: ignore[method-assign]
    loser = asyncio.create_task(world.matching.on_reported(event))
    await first.wait()
    await world.matching.on_reported(event)  # the redelivery finds the claim held, and wins
    gate.set()
    await loser  # its write fails; it must not give back the claim the winner uses
    assert world.cases.docs[event.case_id]["status"] == "assigned"
    assert (world.helpers.docs["near"]["load"], world.helpers.docs["near"]["case_ids"]) == (
        1,
        [event.case_id],
    )
