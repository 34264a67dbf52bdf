"""MongoDB access shared by the services: one client per process, collections and indexes.

Only features a real MongoDB server has are used, so the same code runs on SecantusDB
(the embedded default) and on `mongo` in compose. Writes are single-document conditional
updates; `modified_count` says who won a race.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.settings import CommonSettings

CASES = "cases"
HELPERS = "helpers"
PEOPLE = "people"  # keyed by person key: paired cadres, previous helper
API_KEYS = "api_keys"
AUDIT = "audit"  # append-only: who read or changed which case

Document = dict[str, Any]


def mongo_client(settings: CommonSettings) -> AsyncMongoClient[Document]:
    """Create the client; it connects lazily, on first use (no I/O here)."""
    return AsyncMongoClient(
        settings.mongo_url,
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        appname="carerelay",
    )


async def ensure_indexes(db: AsyncDatabase[Document]) -> None:
    await db[CASES].create_index([("outbox_at", ASCENDING)], sparse=True, name="outbox_pending")
    await db[CASES].create_index([("offer_due", ASCENDING)], sparse=True, name="open_offer_due")
    await db[HELPERS].create_index([("kind", ASCENDING)], name="helper_kind")
    await db[AUDIT].create_index([("case_id", ASCENDING), ("at", ASCENDING)], name="audit_case")


async def ping(db: AsyncDatabase[Document]) -> bool:
    try:
        await db.command("ping")
    except Exception:  # any failure means not ready; the probe says so, not why
        return False
    return True
