"""What notify reads (helper contacts) and writes (one record per outreach attempt on the case)."""

from __future__ import annotations

from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import Contact
from shared.storage import CASES, HELPERS, Document


class OutreachStore(Protocol):
    async def contact_of(self, helper_id: str) -> Contact: ...

    async def begin(self, case_id: str, attempt: Document) -> str | None:
        """Record an attempt as `sending`; None if new, else the status already recorded."""

    async def finish(self, case_id: str, key: str, outcome: Document) -> None: ...


class MongoOutreachStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._cases = db[CASES]
        self._helpers = db[HELPERS]

    async def contact_of(self, helper_id: str) -> Contact:
        doc = await self._helpers.find_one({"_id": helper_id}, {"contact": 1})
        return Contact.model_validate((doc or {}).get("contact") or {})

    async def begin(self, case_id: str, attempt: Document) -> str | None:
        result = await self._cases.update_one(
            {"_id": case_id, "outreach.key": {"$ne": attempt["key"]}},
            {"$push": {"outreach": attempt}},
        )
        if result.modified_count == 1:
            return None
        doc = await self._cases.find_one(
            {"_id": case_id}, {"outreach": {"$elemMatch": {"key": attempt["key"]}}}
        )
        recorded = (doc or {}).get("outreach") or [{"status": "missing_case"}]
        return str(recorded[0]["status"])

    async def finish(self, case_id: str, key: str, outcome: Document) -> None:
        await self._cases.update_one(
            {"_id": case_id, "outreach.key": key},
            {"$set": {f"outreach.$.{field}": value for field, value in outcome.items()}},
        )
