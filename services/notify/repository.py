"""What notify reads (helper contacts, a case's sealed person) and writes (one record per
outreach attempt on the case, dead letters, delivery receipts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.contracts import Contact, OutreachDeadLetter
from shared.crypto import FieldCipher
from shared.people import PersonalData, open_case_personal_data
from shared.storage import CASES, HELPERS, Document

DEAD_LETTERS = OutreachDeadLetter.collection


@dataclass(frozen=True)
class CasePerson:
    person: PersonalData
    urgency: str


class OutreachStore(Protocol):
    async def contacts(self, helper_ids: list[str] | None = None) -> dict[str, Contact]:
        """Contacts of these helpers (all helpers when None)."""

    async def case_person(self, case_id: str) -> CasePerson | None: ...

    async def begin(self, case_id: str, attempt: Document) -> Document | None:
        """Record an attempt as `sending`; None if new, else the attempt already recorded."""

    async def finish(self, case_id: str, key: str, outcome: Document) -> None: ...

    async def unfinished(self, before: datetime, limit: int = 200) -> list[Document]:
        """Cases holding an attempt still `sending` since before `before` (its process died
        between recording it and recording the result), with what it takes to report it."""

    async def mark_interrupted(self, case_id: str, key: str, at: datetime) -> bool:
        """`sending` -> `interrupted`, unless someone finished or marked it first."""

    async def dead_letter(self, record: OutreachDeadLetter) -> None:
        """Keep a message every channel gave up on (unless a later round is already kept)."""

    async def receipt(self, provider_id: str, receipt: Document) -> bool:
        """Attach a delivery receipt to the attempt the provider id names; False when no
        attempt has that id (yet)."""


class MongoOutreachStore:
    def __init__(self, db: AsyncDatabase[Document], cipher: FieldCipher) -> None:
        self._cases = db[CASES]
        self._helpers = db[HELPERS]
        self._dead = db[DEAD_LETTERS]
        self._cipher = cipher

    async def ensure_indexes(self) -> None:
        await self._cases.create_index(
            [("outreach.provider_id", ASCENDING)], sparse=True, name="outreach_provider_id"
        )
        await self._dead.create_index([("status", ASCENDING)], name="dead_letter_status")

    async def contacts(self, helper_ids: list[str] | None = None) -> dict[str, Contact]:
        query: Document = {} if helper_ids is None else {"_id": {"$in": helper_ids}}
        return {
            str(doc["_id"]): Contact.model_validate(doc.get("contact") or {})
            async for doc in self._helpers.find(query, {"contact": 1})
        }

    async def case_person(self, case_id: str) -> CasePerson | None:
        doc = await self._cases.find_one(
            {"_id": case_id}, {"person": 1, "location": 1, "description": 1, "urgency": 1}
        )
        if doc is None or "person" not in doc:
            return None
        return CasePerson(open_case_personal_data(doc, self._cipher), str(doc.get("urgency", "")))

    async def begin(self, case_id: str, attempt: Document) -> Document | None:
        result = await self._cases.update_one(
            {"_id": case_id, "outreach.key": {"$ne": attempt["key"]}},
            {"$push": {"outreach": attempt}},
        )
        if result.modified_count == 1:
            return None
        doc = await self._cases.find_one(
            {"_id": case_id}, {"outreach": {"$elemMatch": {"key": attempt["key"]}}}
        )
        recorded: list[Document] = (doc or {}).get("outreach") or [{"status": "missing_case"}]
        return recorded[0]

    async def finish(self, case_id: str, key: str, outcome: Document) -> None:
        await self._cases.update_one(
            {"_id": case_id, "outreach.key": key},
            {"$set": {f"outreach.$.{field}": value for field, value in outcome.items()}},
        )

    async def unfinished(self, before: datetime, limit: int = 200) -> list[Document]:
        stuck = {"$elemMatch": {"status": "sending", "at": {"$lt": before}}}
        cursor = self._cases.find(
            {"outreach": stuck},
            {"outreach": 1, "events": 1, "facts": 1, "source": 1, "external_id": 1},
            limit=limit,
        )
        return [doc async for doc in cursor]

    async def mark_interrupted(self, case_id: str, key: str, at: datetime) -> bool:
        result = await self._cases.update_one(
            {"_id": case_id, "outreach": {"$elemMatch": {"key": key, "status": "sending"}}},
            {"$set": {"outreach.$.status": "interrupted", "outreach.$.finished_at": at}},
        )
        return result.modified_count == 1

    async def dead_letter(self, record: OutreachDeadLetter) -> None:
        fields = record.model_dump(by_alias=True, exclude={"id"})
        try:
            await self._dead.update_one(
                {"_id": record.id, "attempts": {"$lt": record.attempts}},
                {"$set": fields},
                upsert=True,
            )
        except DuplicateKeyError:
            return  # a later round of this message is already kept

    async def receipt(self, provider_id: str, receipt: Document) -> bool:
        result = await self._cases.update_one(
            {"outreach.provider_id": provider_id}, {"$set": {"outreach.$.receipt": receipt}}
        )
        return result.matched_count == 1


def attempt_record(
    key: str,
    purpose: str,
    recipient_kind: str,
    channel: str,
    recipient: str,
    at: datetime,
    owner: str = "",
    ref: str = "",
    recipient_id: str = "",
) -> Document:
    return {
        "key": key,
        "ref": ref,
        "recipient_id": recipient_id,
        "purpose": purpose,
        "recipient_kind": recipient_kind,
        "channel": channel,
        "recipient": recipient,
        "status": "sending",
        "at": at,
        "owner": owner,  # the process that recorded it: it alone knows whether it sent
    }
