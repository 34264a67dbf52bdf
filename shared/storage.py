"""MongoDB access shared by the services: one client per process, collections and indexes.

Only features a real MongoDB server has are used, so the same code runs on SecantusDB
(the embedded default) and on `mongo` in compose. Writes are single-document conditional
updates; `modified_count` says who won a race.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pymongo import ASCENDING, AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from shared.settings import CommonSettings

CASES = "cases"
HELPERS = "helpers"
PEOPLE = "people"  # keyed by person key: paired cadres, previous helper
API_KEYS = "api_keys"
AUDIT = "audit"  # append-only: who read or changed which case

Document = dict[str, Any]


# What issued a database command: a message or request handler, or a background loop
# (`shared.service.Periodic` sets "periodic"), so `make bench` can tell the hot path apart.
command_origin: ContextVar[str] = ContextVar("carerelay_db_command_origin", default="handler")


class CommandCounter(monitoring.CommandListener):
    """Counts every command sent to the database (one round trip each), by command, collection
    and origin; registered only when BENCH_COUNT_COMMANDS=1 (`make bench` counts, not guesses)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "carerelay_db_commands",
            "Database commands sent (round trips), by command, collection and origin",
            ["command", "collection", "origin"],
            registry=registry,
        )
        self.seconds = Counter(
            "carerelay_db_command_seconds",
            "Time spent waiting for database commands (its rate is the mean number in flight)",
            ["origin"],
            registry=registry,
        )
        self._origins: dict[int, str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)  # getMore names a cursor, not a collection
        collection = target if isinstance(target, str) else str(event.command.get("collection", ""))
        origin = command_origin.get()
        self._origins[event.request_id] = origin
        self.commands.labels(event.command_name, collection, origin).inc()

    def _finished(self, request_id: int, duration_micros: int) -> None:
        origin = self._origins.pop(request_id, "handler")
        self.seconds.labels(origin).inc(duration_micros / 1e6)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._finished(event.request_id, event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._finished(event.request_id, event.duration_micros)


def mongo_client(
    settings: CommonSettings, registry: CollectorRegistry | None = None
) -> AsyncMongoClient[Document]:
    """Create the client; it connects lazily, on first use (no I/O here). With a metrics
    registry and `BENCH_COUNT_COMMANDS` on, every command is counted there."""
    listeners = [CommandCounter(registry)] if registry and settings.count_commands else []
    return AsyncMongoClient(
        settings.mongo_url,
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        appname="carerelay",
        event_listeners=listeners,
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
