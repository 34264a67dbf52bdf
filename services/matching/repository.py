"""The stores matching reads and writes: helper capacity, case state, people's links."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from shared.storage import CASES, HELPERS, PEOPLE, Document

from .domain import Person


class Claim(Enum):
    taken = "taken"
    already_held = "already_held"
    refused = "refused"


class HelperStore(Protocol):
    async def all(self) -> list[Document]: ...

    async def some(self, helper_ids: list[str]) -> list[Document]: ...

    async def claim(self, helper_id: str, case_id: str, capacity: int) -> Claim:
        """Take one unit of the helper's capacity for this case, if they have one to spare.
        `capacity` is the one the index holds: if the registry changed it since, refuse."""

    async def release(self, helper_id: str, case_id: str) -> None: ...

    async def count_accept(self, helper_id: str) -> None: ...

    async def claims(self) -> dict[str, list[str]]:
        """The cases each helper holds capacity for (helpers holding none are left out)."""


class CaseStore(Protocol):
    async def get(self, case_id: str) -> Document | None: ...

    async def apply(self, case_id: str, version: int, update: Document) -> bool:
        """Apply an update if the case is still at `version`; False if someone changed it first."""

    async def events(self, case_id: str) -> Document: ...

    async def contact(self, case_id: str) -> Document | None:
        """The person's address and numbers, for the helper who accepted."""

    async def overdue_offers(self, now: datetime, limit: int) -> list[Document]: ...

    async def open_cases(self) -> list[Document]:
        """Status, priority and first-contact deadline of every case not yet resolved."""

    async def states(self, case_ids: list[str]) -> list[Document]:
        """Status, version and offers of these cases."""


class PeopleStore(Protocol):
    async def get(self, person_key: str) -> Person: ...

    async def keys(self) -> list[str]:
        """Every person key with a link (a paired cadre, a previous helper)."""

    async def remember_helper(self, person_key: str, helper_id: str, now: datetime) -> None: ...


_NO_CONTACTS = {"contact": 0, "case_ids": 0}
OPEN_STATUSES = ("received", "assigned", "accepted", "escalated")


class MongoHelperStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._helpers = db[HELPERS]

    async def all(self) -> list[Document]:
        return [doc async for doc in self._helpers.find({}, _NO_CONTACTS)]

    async def some(self, helper_ids: list[str]) -> list[Document]:
        cursor = self._helpers.find({"_id": {"$in": helper_ids}}, _NO_CONTACTS)
        return [doc async for doc in cursor]

    async def claim(self, helper_id: str, case_id: str, capacity: int) -> Claim:
        # Capacity as a constant, not `$expr`: SecantusDB scans the whole collection for any
        # filter with a top-level operator (~150 ms at 10,000 helpers); by _id it is one read.
        result = await self._helpers.update_one(
            {
                "_id": helper_id,
                "active": True,
                "case_ids": {"$ne": case_id},
                "capacity": capacity,
                "load": {"$lt": capacity},
            },
            {"$inc": {"load": 1, "offers": 1}, "$push": {"case_ids": case_id}},
        )
        if result.modified_count == 1:
            return Claim.taken
        # A redelivered event may find its own earlier claim still in place.
        held = await self._helpers.find_one({"_id": helper_id, "case_ids": case_id}, {"_id": 1})
        return Claim.already_held if held else Claim.refused

    async def release(self, helper_id: str, case_id: str) -> None:
        await self._helpers.update_one(
            {"_id": helper_id, "case_ids": case_id},
            {"$inc": {"load": -1}, "$pull": {"case_ids": case_id}},
        )

    async def count_accept(self, helper_id: str) -> None:
        await self._helpers.update_one({"_id": helper_id}, {"$inc": {"accepts": 1}})

    async def claims(self) -> dict[str, list[str]]:
        cursor = self._helpers.find({"load": {"$gt": 0}}, {"case_ids": 1})
        return {doc["_id"]: list(doc.get("case_ids", [])) async for doc in cursor}


class MongoCaseStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._cases = db[CASES]

    async def get(self, case_id: str) -> Document | None:
        return await self._cases.find_one({"_id": case_id}, {"person": 0, "description": 0})

    async def apply(self, case_id: str, version: int, update: Document) -> bool:
        result = await self._cases.update_one({"_id": case_id, "version": version}, update)
        return result.modified_count == 1

    async def events(self, case_id: str) -> Document:
        doc = await self._cases.find_one({"_id": case_id}, {"events": 1})
        return dict(doc.get("events", {})) if doc else {}

    async def contact(self, case_id: str) -> Document | None:
        return await self._cases.find_one(
            {"_id": case_id},
            {"person": 1, "location": 1, "description": 1, "facts": 1},
        )

    async def overdue_offers(self, now: datetime, limit: int) -> list[Document]:
        cursor = self._cases.find(
            {"offer_due": {"$lt": now}, "status": "assigned"}, {"offers": 1}, limit=limit
        )
        return [doc async for doc in cursor]

    async def states(self, case_ids: list[str]) -> list[Document]:
        cursor = self._cases.find(
            {"_id": {"$in": case_ids}}, {"status": 1, "version": 1, "offers": 1, "ladder": 1}
        )
        return [doc async for doc in cursor]

    async def open_cases(self) -> list[Document]:
        cursor = self._cases.find(
            {"status": {"$in": list(OPEN_STATUSES)}},
            {"status": 1, "triage.priority": 1, "triage.first_contact_due": 1},
        )
        return [doc async for doc in cursor]


class MongoPeopleStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._people = db[PEOPLE]

    async def get(self, person_key: str) -> Person:
        doc = await self._people.find_one({"_id": person_key}) if person_key else None
        if doc is None:
            return Person()
        return Person(
            paired_cadre_ids=frozenset(doc.get("paired_cadre_ids", ())),
            previous_helper_id=doc.get("previous_helper_id"),
        )

    async def keys(self) -> list[str]:
        return [doc["_id"] async for doc in self._people.find({}, {"_id": 1})]

    async def remember_helper(self, person_key: str, helper_id: str, now: datetime) -> None:
        if person_key:
            await self._people.update_one(
                {"_id": person_key},
                {"$set": {"previous_helper_id": helper_id, "previous_helper_at": now}},
                upsert=True,
            )
