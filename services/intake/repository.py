"""The case store as intake sees it."""

from __future__ import annotations

from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.storage import CASES, Document


class CaseRepository(Protocol):
    async def add(self, case: Document) -> bool:
        """Store a new case; False when a case with that id already exists."""

    async def get(self, case_id: str) -> Document | None: ...


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
