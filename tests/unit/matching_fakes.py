"""In-memory stores for matching's unit tests: the repository Protocols, with every call counted
(a call stands for one MongoDB round trip)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from services.intake.domain import open_case
from services.matching.domain import Person
from services.matching.index import HelperIndex
from services.matching.links import OfferLinks
from services.matching.metrics import MatchingMetrics
from services.matching.policy import Policy
from services.matching.repository import Claim
from services.matching.usecases import Matching
from shared.contracts import Event, HardshipReport, HardshipReported, HelperRecord
from shared.crypto import FieldCipher
from shared.outbox import Flush
from shared.storage import Document

E = TypeVar("E", bound=Event)
NOW = datetime(2022, 11, 22, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Wuhan


class Calls:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, name: str) -> None:
        self.counts[name] += 1

    def total(self) -> int:
        return sum(self.counts.values())


class FakeHelpers:
    def __init__(self, records: Sequence[HelperRecord], calls: Calls) -> None:
        self.docs: dict[str, Document] = {
            r.id: {
                "_id": r.id,
                **r.model_dump(mode="json", exclude={"id", "paired_with", "contact"}),
                "load": 0,
                "case_ids": [],
                "offers": 0,
                "accepts": 0,
            }
            for r in records
        }
        self._calls = calls

    async def all(self) -> list[Document]:
        self._calls("helpers.all")
        return copy.deepcopy(list(self.docs.values()))

    async def some(self, helper_ids: list[str]) -> list[Document]:
        self._calls("helpers.some")
        return [copy.deepcopy(self.docs[i]) for i in helper_ids if i in self.docs]

    async def claim(self, helper_id: str, case_id: str, capacity: int) -> Claim:
        self._calls("helpers.claim")
        doc = self.docs[helper_id]
        if case_id in doc["case_ids"]:
            return Claim.already_held
        if not doc["active"] or doc["capacity"] != capacity or doc["load"] >= capacity:
            return Claim.refused
        doc["load"] += 1
        doc["offers"] += 1
        doc["case_ids"].append(case_id)
        return Claim.taken

    async def release(self, helper_id: str, case_id: str) -> None:
        self._calls("helpers.release")
        doc = self.docs[helper_id]
        if case_id in doc["case_ids"]:
            doc["case_ids"].remove(case_id)
            doc["load"] -= 1

    async def count_accept(self, helper_id: str) -> None:
        self._calls("helpers.count_accept")
        self.docs[helper_id]["accepts"] += 1

    async def claims(self) -> dict[str, list[str]]:
        self._calls("helpers.claims")
        return {h: list(d["case_ids"]) for h, d in self.docs.items() if d["load"] > 0}


def _apply(doc: Document, update: Document) -> None:
    for key, value in update.get("$set", {}).items():
        target, *path = key.split(".")
        if path:
            doc.setdefault(target, {})[path[0]] = value
        else:
            doc[key] = value
    for key, value in update.get("$inc", {}).items():
        doc[key] = doc.get(key, 0) + value
    for key, value in update.get("$push", {}).items():
        items = value["$each"] if isinstance(value, dict) and "$each" in value else [value]
        doc.setdefault(key, []).extend(items)


class FakeCases:
    def __init__(self, calls: Calls) -> None:
        self.docs: dict[str, Document] = {}
        self._calls = calls

    async def get(self, case_id: str) -> Document | None:
        self._calls("cases.get")
        doc = self.docs.get(case_id)
        return copy.deepcopy(doc) if doc else None

    async def apply(self, case_id: str, version: int, update: Document) -> bool:
        self._calls("cases.apply")
        doc = self.docs.get(case_id)
        if doc is None or doc.get("version") != version:
            return False
        _apply(doc, copy.deepcopy(update))
        return True

    async def events(self, case_id: str) -> Document:
        self._calls("cases.events")
        return dict(self.docs[case_id].get("events", {}))

    async def contact(self, case_id: str) -> Document | None:
        self._calls("cases.contact")
        return copy.deepcopy(self.docs.get(case_id))

    async def states(self, case_ids: list[str]) -> list[Document]:
        self._calls("cases.states")
        return [copy.deepcopy(self.docs[c]) for c in case_ids if c in self.docs]

    async def overdue_offers(self, now: datetime, limit: int) -> list[Document]:
        self._calls("cases.overdue_offers")
        due = [
            d
            for d in self.docs.values()
            if d.get("status") == "assigned" and d.get("offer_due") and d["offer_due"] < now
        ]
        return copy.deepcopy(due[:limit])

    async def open_cases(self) -> list[Document]:
        self._calls("cases.open_cases")
        return [d for d in self.docs.values() if d["status"] != "resolved"]


class FakePeople:
    def __init__(self, calls: Calls, links: dict[str, Person] | None = None) -> None:
        self.links = dict(links or {})
        self._calls = calls

    async def get(self, person_key: str) -> Person:
        self._calls("people.get")
        return self.links.get(person_key, Person())

    async def keys(self) -> list[str]:
        self._calls("people.keys")
        return list(self.links)

    async def remember_helper(self, person_key: str, helper_id: str, now: datetime) -> None:
        self._calls("people.remember_helper")
        old = self.links.get(person_key, Person())
        self.links[person_key] = Person(old.paired_cadre_ids, helper_id)


class FakeOutbox:
    def __init__(self) -> None:
        self.published: list[Event] = []

    async def flush_events(self, doc_id: str, events: Sequence[Event], stamp: datetime) -> Flush:
        self.published.extend(events)
        return Flush.published


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: Any) -> None:
        self.now += timedelta(**delta)


class World:
    """Matching wired to in-memory stores, a clock that only moves when told, and a list of
    every event it published."""

    def __init__(
        self, records: Sequence[HelperRecord], people: dict[str, Person] | None = None
    ) -> None:
        self.calls = Calls()
        self.helpers = FakeHelpers(records, self.calls)
        self.cases = FakeCases(self.calls)
        self.people = FakePeople(self.calls, people)
        self.outbox = FakeOutbox()
        self.published: list[Event] = []
        self.clock = Clock()
        self.metrics_registry = CollectorRegistry()
        self.metrics = MatchingMetrics.create(self.metrics_registry)
        self.cipher = FieldCipher("development-only-not-a-secret")
        self.matching = Matching(
            self.helpers,
            self.cases,
            self.people,
            HelperIndex(),
            Policy.load(),
            self.outbox,
            self._publish,
            OfferLinks("test-secret", "http://matching.test"),
            self.metrics,
            self.cipher,
            clock=self.clock,
        )

    async def _publish(self, event: Event) -> None:
        self.published.append(event)

    def events(self, model: type[E]) -> list[E]:
        """Every event of this type published so far, directly or through the outbox."""
        return [e for e in [*self.published, *self.outbox.published] if isinstance(e, model)]


EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
HOME = (EXAMPLE["location"]["lat"], EXAMPLE["location"]["lon"])  # 江汉区, 420103
KM = 1 / 111.2
PERSON_SECRET = b"development-only-not-a-secret"


def report(world: World, **changes: Any) -> HardshipReported:
    """Store a case as intake would (from the example report, changed as asked); its event."""
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = f"T{len(world.cases.docs):05d}"
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            body[section][field] = value
        else:
            body[key] = value
    doc, event = open_case(
        HardshipReport.model_validate(body),
        f"case-{len(world.cases.docs)}",
        world.clock(),
        world.cipher,
        PERSON_SECRET,
    )
    world.cases.docs[event.case_id] = doc
    return event


def volunteer_record(id: str, km_north: float, **more: Any) -> HelperRecord:
    values: dict[str, Any] = {
        "id": id,
        "kind": "volunteer",
        "name": id,
        "lat": HOME[0] + km_north * KM,
        "lon": HOME[1],
        "radius_km": 5,
        "capacity": 2,
    }
    return HelperRecord.model_validate(values | more)
