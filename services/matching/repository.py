"""The stores matching writes to: helper capacity claims and case decisions."""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import CaseStatus
from shared.storage import CASES, HELPERS, Document


class Claim(Enum):
    taken = "taken"
    already_held = "already_held"
    refused = "refused"


class HelperStore(Protocol):
    async def all(self) -> list[Document]: ...

    async def claim(self, helper_id: str, case_id: str) -> Claim:
        """Take one unit of the helper's capacity for this case, if they have one to spare."""

    async def release(self, helper_id: str, case_id: str) -> None: ...


class CaseStore(Protocol):
    async def record_decision(self, case_id: str, update: Document) -> bool:
        """Apply the decision if the case is still undecided; False if someone decided first."""

    async def events(self, case_id: str) -> Document: ...


class MongoHelperStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._helpers = db[HELPERS]

    async def all(self) -> list[Document]:
        return [doc async for doc in self._helpers.find({}, {"contact": 0, "case_ids": 0})]

    async def claim(self, helper_id: str, case_id: str) -> Claim:
        result = await self._helpers.update_one(
            {
                "_id": helper_id,
                "active": True,
                "case_ids": {"$ne": case_id},
                "$expr": {"$lt": ["$load", "$capacity"]},
            },
            {"$inc": {"load": 1}, "$push": {"case_ids": case_id}},
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


class MongoCaseStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._cases = db[CASES]

    async def record_decision(self, case_id: str, update: Document) -> bool:
        result = await self._cases.update_one(
            {"_id": case_id, "status": CaseStatus.received.value}, update
        )
        return result.modified_count == 1

    async def events(self, case_id: str) -> Document:
        doc = await self._cases.find_one({"_id": case_id}, {"events": 1})
        return dict(doc["events"]) if doc else {}
