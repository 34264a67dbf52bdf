"""Matching against the real RabbitMQ and a real MongoDB-wire server."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from zoneinfo import ZoneInfo

import aio_pika
import httpx
import pytest
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.api import CaseView
from services.intake.domain import open_case
from services.matching.app import build_app
from services.matching.settings import MatchingSettings
from shared.auth import Role
from shared.contracts import (
    Availability,
    HardshipReport,
    HardshipReported,
    HelperKind,
    HelperRecord,
    Need,
    OfferAnswer,
    OfferResponse,
    Registry,
    Resolution,
    ResolveCase,
    Resolver,
    utcnow,
)
from shared.registry import upsert_helpers
from shared.storage import CASES, HELPERS, Document
from shared.topology import EVENTS, MATCHING_REPORTED
from tests.support import (
    DEV_CIPHER,
    PERSON_SECRET,
    EventListener,
    bearer,
    issue_key,
    running,
    service_env,
    wait_for,
)

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
LAT, LON = EXAMPLE["location"]["lat"], EXAMPLE["location"]["lon"]


def volunteer(id: str, km_north: float, capacity: int = 2) -> HelperRecord:
    return HelperRecord(
        id=id,
        kind=HelperKind.volunteer,
        name=f"志愿者{id}",
        lat=LAT + km_north / 111.2,
        lon=LON,
        radius_km=5,
        capacity=capacity,
    )


DESK = HelperRecord(
    id="desk",
    kind=HelperKind.duty_desk,
    name="武汉市残联值班室",
    divisions=["420100"],
    capacity=100000,
)


async def new_case(db: AsyncDatabase[Document], **changes: Any) -> HardshipReported:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = uuid.uuid4().hex
    body["location"].update(changes)
    document, event = open_case(
        HardshipReport.model_validate(body), uuid.uuid4().hex, utcnow(), DEV_CIPHER, PERSON_SECRET
    )
    await db[CASES].insert_one(document)
    return event


async def publish(amqp: aio_pika.abc.AbstractRobustConnection, body: bytes) -> None:
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    await exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=MATCHING_REPORTED.routing_key,
    )
    await channel.close()


StartMatching = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def matching_with(
    db: AsyncDatabase[Document], amqp_url: str, mongo_url: str, db_name: str
) -> StartMatching:
    """Starts matching over the given registry (settings overridden by keyword)."""

    @asynccontextmanager
    async def start(helpers: list[HelperRecord], **env: str) -> AsyncIterator[httpx.AsyncClient]:
        await upsert_helpers(db, helpers, utcnow(), PERSON_SECRET)
        values = service_env(amqp_url, mongo_url, db_name) | env
        async with running(build_app(MatchingSettings(**values))) as client:  # type: ignore[arg-type]
            yield client

    return start


@pytest.fixture
async def matching(
    matching_with: StartMatching, listener: EventListener
) -> AsyncIterator[httpx.AsyncClient]:
    await listener.bind("case.*")
    async with matching_with([volunteer("near", 1.0), volunteer("far", 3.0), DESK]) as client:
        yield client


async def test_case_goes_to_the_nearest_volunteer_and_their_capacity_is_claimed(
    matching: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    event = await new_case(db)
    await publish(amqp, event.model_dump_json().encode())
    [assigned] = await listener.wait("case.assigned", event.case_id)
    assert assigned["helper"]["helper_id"] == "near"
    assert (assigned["source"], assigned["external_id"]) == (event.source, event.external_id)
    case = await db[CASES].find_one({"_id": event.case_id})
    assert case is not None and case["status"] == "assigned"
    assert [c["helper_id"] for c in case["decision"]["candidates"]] == ["near", "far"]
    assert [t["status"] for t in case["timeline"]] == ["received", "assigned"]
    helper = await db[HELPERS].find_one({"_id": "near"})
    assert helper is not None and helper["load"] == 1 and helper["case_ids"] == [event.case_id]


async def test_redelivered_event_assigns_nothing_new_and_repeats_the_same_announcement(
    matching: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    event = await new_case(db)
    for _ in range(3):
        await publish(amqp, event.model_dump_json().encode())
    announcements = await listener.wait("case.assigned", event.case_id, count=3)
    assert len({a["event_id"] for a in announcements}) == 1
    loads = {h["_id"]: h["load"] async for h in db[HELPERS].find({"kind": "volunteer"})}
    assert sum(loads.values()) == 1


async def test_report_with_nobody_in_range_is_escalated_to_the_duty_desk(
    matching: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    event = await new_case(db, lat=LAT + 1.0)  # 111 km north of every volunteer
    await publish(amqp, event.model_dump_json().encode())
    [escalated] = await listener.wait("case.escalated", event.case_id)
    assert escalated["helper"]["helper_id"] == "desk"
    assert escalated["reason"] == "no_eligible_helper"
    case = await db[CASES].find_one({"_id": event.case_id})
    assert case is not None and case["status"] == "escalated"


async def test_fifty_reports_at_once_never_push_a_volunteer_past_capacity(
    matching: httpx.AsyncClient,
    db: AsyncDatabase[Document],
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    events = [await new_case(db) for _ in range(50)]
    await asyncio.gather(*(publish(amqp, e.model_dump_json().encode()) for e in events))

    async def all_decided() -> bool:
        return await db[CASES].count_documents({"status": {"$ne": "received"}}) == 50

    await wait_for(all_decided, timeout=60)
    async for helper in db[HELPERS].find({"kind": "volunteer"}):
        assert helper["load"] == len(helper["case_ids"]) <= helper["capacity"]
    assert await db[CASES].count_documents({"status": "assigned"}) == 4
    assert await db[CASES].count_documents({"status": "escalated"}) == 46


async def test_unreadable_event_is_dead_lettered(
    matching: httpx.AsyncClient,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    await publish(amqp, b'{"case_id": "x", "facts": "not facts"}')
    channel = await amqp.channel()
    dlq = await channel.get_queue(MATCHING_REPORTED.dead_letter_queue)

    async def dead_letter() -> aio_pika.abc.AbstractIncomingMessage | None:
        return await dlq.get(no_ack=True, fail=False)

    message = await wait_for(dead_letter)
    assert json.loads(message.body)["case_id"] == "x"


# ---------------------------------------------------------------- the seeds' flows, end to end
# through matching: real broker, real database, answers and resolutions over AMQP and HTTP.


async def new_report(db: AsyncDatabase[Document], **changes: Any) -> HardshipReported:
    """A case as intake stores it: the example report with `section__field` changes."""
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = uuid.uuid4().hex
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            body[section][name] = value
        else:
            body[key] = value
    document, event = open_case(
        HardshipReport.model_validate(body), uuid.uuid4().hex, utcnow(), DEV_CIPHER, PERSON_SECRET
    )
    await db[CASES].insert_one(document)
    return event


async def send(amqp: aio_pika.abc.AbstractRobustConnection, key: str, body: BaseModel) -> None:
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EVENTS.name)
    message = aio_pika.Message(
        body.model_dump_json().encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
    )
    await exchange.publish(message, routing_key=key)
    await channel.close()


async def case_view(db: AsyncDatabase[Document], case_id: str) -> CaseView:
    doc = await db[CASES].find_one({"_id": case_id})
    assert doc is not None
    return CaseView.of(doc)


def off_duty_now() -> list[Availability]:
    """Hours that do not include this moment: only on the day after tomorrow (Wuhan time)."""
    today = utcnow().astimezone(ZoneInfo("Asia/Shanghai")).isoweekday()
    return [Availability(days=[(today + 1) % 7 + 1])]


async def test_blind_person_alone_in_lockdown_gets_the_nearest_volunteer_on_duty_with_room(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    helpers = [
        volunteer("hours-over", 0.3).model_copy(update={"hours": off_duty_now()}),
        volunteer("full", 0.6, capacity=0),
        volunteer("on-duty", 1.4),
        volunteer("further", 2.8),
        DESK,
    ]
    async with matching_with(helpers):
        event = await new_report(db, person__lives_alone=True, need="medicine")
        await publish(amqp, event.model_dump_json().encode())
        [assigned] = await listener.wait("case.assigned", event.case_id)
    assert assigned["helper"]["helper_id"] == "on-duty"
    view = await case_view(db, event.case_id)
    assert view.decision is not None
    assert [c.helper_id for c in view.decision.candidates] == ["on-duty", "further"]
    assert {(e.helper_id, e.reason) for e in view.decision.excluded} == {
        ("hours-over", "off_duty"),
        ("full", "at_capacity"),
    }
    assert view.triage is not None and view.triage.priority == "P1"


async def test_deaf_person_needing_a_doctor_escort_is_offered_only_to_a_signing_volunteer(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    signer = volunteer("signs", 3.5).model_copy(update={"skills": ["sign_language"]})
    async with matching_with([volunteer("speaks", 0.2), signer, DESK]):
        event = await new_report(
            db, need="medical_care", person__disability={"category": "hearing", "grade": 2}
        )
        await publish(amqp, event.model_dump_json().encode())
        [assigned] = await listener.wait("case.assigned", event.case_id)
    assert assigned["helper"]["helper_id"] == "signs"
    view = await case_view(db, event.case_id)
    assert view.decision is not None and view.decision.required_skills == ["sign_language"]
    assert [(e.helper_id, e.reason) for e in view.decision.excluded] == [
        ("speaks", "missing_skill")
    ]


async def test_low_income_family_needing_dibao_goes_to_the_civil_affairs_office_of_its_county(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    offices = [
        HelperRecord(
            id=f"mzj-{county}",
            kind=HelperKind.agency,
            name=f"{county}民政局",
            needs=[Need.benefits],
            divisions=[county],
            capacity=100,
        )
        for county in ("420103", "420106")
    ]
    async with matching_with([volunteer("near", 0.1), *offices, DESK]):
        event = await new_report(
            db,
            need="benefits",
            person__household_disabled_count=2,
            location__division_code="420103001002",  # a village of 江汉区
        )
        await publish(amqp, event.model_dump_json().encode())
        [assigned] = await listener.wait("case.assigned", event.case_id)
    assert assigned["helper"]["helper_id"] == "mzj-420103"
    view = await case_view(db, event.case_id)
    assert [(s.rung, s.reason) for s in view.ladder] == [
        ("field", "start"),
        ("local", "no_eligible_helper"),
        ("agency", "no_eligible_helper"),
    ]


async def test_the_paired_cadre_is_offered_the_case_before_a_nearer_volunteer(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    cadre = HelperRecord(
        id="cadre-li",
        kind=HelperKind.paired_cadre,
        name="李干部",
        paired_with=[EXAMPLE["person"]["phone"]],
    )
    async with matching_with([volunteer("next-door", 0.05), cadre, DESK]):
        event = await new_report(db)
        await publish(amqp, event.model_dump_json().encode())
        [assigned] = await listener.wait("case.assigned", event.case_id)
    assert assigned["helper"]["helper_id"] == "cadre-li"
    view = await case_view(db, event.case_id)
    assert view.decision is not None
    assert [(c.helper_id, c.basis) for c in view.decision.candidates] == [
        ("cadre-li", "paired_cadre"),
        ("next-door", "nearby"),
    ]


async def test_three_declines_send_the_case_to_the_agency_then_the_duty_desk_and_the_view_shows_why(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    health = HelperRecord(
        id="wjw-jianghan",
        kind=HelperKind.agency,
        name="江汉区卫健局",
        needs=[Need.medicine],
        divisions=["420103"],
        capacity=100,
    )
    helpers = [volunteer("v1", 0.5), volunteer("v2", 1.0), volunteer("v3", 1.5), health, DESK]
    async with matching_with(helpers):
        event = await new_report(db)
        await publish(amqp, event.model_dump_json().encode())
        for n in range(1, 5):
            offers = await listener.wait("case.assigned", event.case_id, count=n)
            answer = OfferAnswer(
                case_id=event.case_id,
                offer_id=offers[-1]["offer_id"],
                response=OfferResponse.decline,
                reason="busy",
            )
            await send(amqp, OfferAnswer.routing_key, answer)
        [escalated] = await listener.wait("case.escalated", event.case_id)
        declined = await listener.wait("case.declined", event.case_id, count=4)
    assert [o["helper"]["helper_id"] for o in offers] == ["v1", "v2", "v3", "wjw-jianghan"]
    assert escalated["helper"]["helper_id"] == "desk"
    assert all(
        (d["source"], d["external_id"]) == (event.source, event.external_id) for d in declined
    )
    view = await case_view(db, event.case_id)
    assert view.status == "escalated"
    assert [(s.rung, s.reason) for s in view.ladder] == [
        ("field", "start"),
        ("field_widened", "offers_exhausted"),
        ("local", "no_eligible_helper"),
        ("agency", "no_eligible_helper"),
        ("duty_desk", "offers_exhausted"),
    ]
    assert [(o.helper_id, o.outcome, o.reason) for o in view.offers] == [
        ("v1", "declined", "busy"),
        ("v2", "declined", "busy"),
        ("v3", "declined", "busy"),
        ("wjw-jianghan", "declined", "busy"),
    ]
    assert [(d.rung, d.outcome) for d in view.decisions] == [
        ("field", "offer"),
        ("field", "offer"),
        ("field", "offer"),
        ("agency", "offer"),
        ("agency", "escalate"),
    ]
    assert [(e.helper_id, e.reason) for e in view.decisions[1].excluded] == [
        ("v1", "already_offered")
    ]
    loads = {h["_id"]: h["load"] async for h in db[HELPERS].find({})}
    assert set(loads.values()) == {0}


async def test_an_offer_not_answered_in_its_window_times_out_and_the_next_volunteer_is_asked(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    helpers = [volunteer("near", 0.5), volunteer("next", 1.0), DESK]
    fast = {"ACK_WINDOW_SCALE": "0.002", "OFFER_SWEEP_INTERVAL_S": "0.2"}  # P1: 10 min -> 1.2 s
    async with matching_with(helpers, **fast):
        event = await new_report(db)
        await publish(amqp, event.model_dump_json().encode())
        [first] = await listener.wait("case.assigned", event.case_id)
        [declined] = await listener.wait("case.declined", event.case_id)
        second = (await listener.wait("case.assigned", event.case_id, count=2))[1]
    assert (first["helper"]["helper_id"], second["helper"]["helper_id"]) == ("near", "next")
    assert declined["reason"] == "timeout"
    view = await case_view(db, event.case_id)
    assert view.offers[0].outcome == "timeout"
    assert view.offers[0].answered_at is not None
    assert view.offers[0].answered_at >= view.offers[0].ack_due


async def test_the_helper_accepts_and_resolves_through_the_signed_link_and_the_loop_closes(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    async with matching_with([volunteer("near", 0.5), DESK]) as api:
        event = await new_report(db)
        await publish(amqp, event.model_dump_json().encode())
        [assigned] = await listener.wait("case.assigned", event.case_id)
        link = assigned["respond_url"].removeprefix("http://127.0.0.1:8001")
        too_soon = await api.post(f"{link}/resolve", data={"resolution": "helped"})
        accepted = await api.post(f"{link}/accept", headers={"accept": "text/html"})
        page = (await api.get(link, headers={"accept": "text/html"})).text
        bad = await api.post(f"{link}/resolve", json={"resolution": "sorted"})
        resolved = await api.post(f"{link}/resolve", json={"resolution": "delivered"})
        again = await api.post(f"{link}/resolve", data={"resolution": "helped"})
        [closed] = await listener.wait("case.resolved", event.case_id)
    assert too_soon.status_code == 409
    assert accepted.status_code == 200 and 'name="resolution"' in accepted.text
    assert f"{link}/resolve" in page and "办结" in page
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "resolution"]
    assert resolved.status_code == 200 and resolved.json()["result"] == "resolved"
    assert again.status_code == 409
    assert closed["resolution"] == "delivered" and closed["helper"]["helper_id"] == "near"
    assert (closed["source"], closed["external_id"]) == (event.source, event.external_id)
    view = await case_view(db, event.case_id)
    assert view.status == "resolved"
    assert view.resolution is not None and view.resolution.by == "helper"
    assert [t.status for t in view.timeline] == ["received", "assigned", "accepted", "resolved"]
    helper = await db[HELPERS].find_one({"_id": "near"})
    assert helper is not None and helper["load"] == 0 and helper["accepts"] == 1
    case = await db[CASES].find_one({"_id": event.case_id})
    assert case is not None and "outbox" not in case  # published, then cleared


async def test_the_duty_desk_resolves_an_escalated_case_over_amqp_and_a_repeat_does_nothing(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    async with matching_with([DESK]):
        event = await new_report(db)
        await publish(amqp, event.model_dump_json().encode())
        await listener.wait("case.escalated", event.case_id)
        command = ResolveCase(
            case_id=event.case_id, resolution=Resolution.referred, by=Resolver.duty_desk
        )
        for _ in range(2):
            await send(amqp, ResolveCase.routing_key, command)
        [closed] = await listener.wait("case.resolved", event.case_id)

        async def version() -> int | None:
            doc = await db[CASES].find_one({"_id": event.case_id})
            return doc["version"] if doc and doc["status"] == "resolved" else None

        assert await wait_for(version) == 3  # received 1 -> escalated 2 -> resolved 3, once
    assert closed["by"] == "duty_desk" and closed["helper"]["helper_id"] == "desk"


async def test_a_helper_added_to_the_registry_is_offered_the_next_case_and_metrics_show_it(
    db: AsyncDatabase[Document],
    matching_with: StartMatching,
    amqp: aio_pika.abc.AbstractRobustConnection,
    listener: EventListener,
) -> None:
    await listener.bind("case.*")
    settings = {"CASE_COUNT_INTERVAL_S": "0.2", "REGISTRY_REFRESH_S": "3600"}
    async with matching_with([DESK], **settings) as api:
        added = Registry(helpers=[volunteer("newcomer", 0.4)]).model_dump(mode="json")
        hotline, _ = await issue_key(db)
        refused = await api.put("/v1/registry/helpers", json=added, headers=bearer(hotline))
        assert refused.status_code == 403, "only an admin key changes the registry"
        admin, _ = await issue_key(db, role=Role.admin, source=None, divisions=())
        put = await api.put("/v1/registry/helpers", json=added, headers=bearer(admin))
        assert put.status_code == 200

        async def indexed() -> bool:
            return "carerelay_matching_helpers_indexed 2.0" in (await api.get("/metrics")).text

        await wait_for(indexed)  # the change reached the index as an event, not by a reload
        event = await new_report(db)
        await publish(amqp, event.model_dump_json().encode())
        [assigned] = await listener.wait("case.assigned", event.case_id)
        assert assigned["helper"]["helper_id"] == "newcomer"

        async def counted() -> str | None:
            text = (await api.get("/metrics")).text
            return (
                text
                if 'carerelay_matching_open_cases{priority="P1",status="assigned"} 1.0' in text
                else None
            )

        metrics = await wait_for(counted)
    for name in (
        "carerelay_matching_report_to_first_offer_seconds_count 1.0",
        'carerelay_matching_offers_total{helper_kind="volunteer",rung="field"} 1.0',
        "carerelay_matching_candidate_search_seconds_count",
        "carerelay_matching_first_contact_overdue",
        "carerelay_matching_escalations_total",
        "carerelay_matching_offer_answers_total",
        "carerelay_matching_resolved_total",
    ):
        assert name in metrics
    assert event.case_id not in metrics and "newcomer" not in metrics
