"""The case store as intake sees it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.storage import CASES, Document


class CaseRepository(Protocol):
    async def add(self, case: Document) -> bool:
        """Store a new case; False when a case with that id already exists."""

    async def get(self, case_id: str) -> Document | None: ...

    async def mark_published(self, case_id: str) -> None: ...

    async def unpublished(self, received_before: datetime, limit: int) -> list[Document]: ...


class MongoCaseRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._cases = db[CASES]

    async def add(self, case: Document) -> bool:
        try:
            await self._cases.insert_one(case)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, case_id: str) -> Document | None:
        return await self._cases.find_one({"_id": case_id})

    async def mark_published(self, case_id: str) -> None:
        await self._cases.update_one({"_id": case_id}, {"$unset": {"outbox": ""}})

    async def unpublished(self, received_before: datetime, limit: int) -> list[Document]:
        cursor = self._cases.find(
            {"outbox": "pending", "received_at": {"$lt": received_before}},
            {"events": 1},
            limit=limit,
        )
        return [doc async for doc in cursor]
