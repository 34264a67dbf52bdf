"""The append-only record of who read or changed which case. The application only ever inserts;
in production the database user of the services should be granted insert and find on this
collection and nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from shared.storage import AUDIT, Document


class AuditLog(Protocol):
    async def record(
        self, *, actor: str, action: str, case_id: str, at: datetime, outcome: str = "ok"
    ) -> None: ...

    async def of_case(self, case_id: str) -> list[Document]: ...


class MongoAuditLog:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._entries = db[AUDIT]

    async def record(
        self, *, actor: str, action: str, case_id: str, at: datetime, outcome: str = "ok"
    ) -> None:
        await self._entries.insert_one(
            {"actor": actor, "action": action, "case_id": case_id, "at": at, "outcome": outcome}
        )

    async def of_case(self, case_id: str) -> list[Document]:
        cursor = self._entries.find({"case_id": case_id}, {"_id": 0}).sort("at", 1)
        return [entry async for entry in cursor]
