"""The transactional outbox, kept inside the case document itself.

A state change and the events announcing it are written in one single-document update (atomic
on any MongoDB), then published with confirms and cleared. If the broker is down or the process
dies in between, a relay in every replica publishes what is still pending. Consumers are
idempotent by event id, so an event published twice does no harm; one never published would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import aiormq.exceptions
from pymongo.asynchronous.collection import AsyncCollection

from shared.contracts import Event
from shared.storage import Document
from shared.telemetry import continued, trace_headers

OUTBOX = "outbox"
OUTBOX_AT = "outbox_at"

PublishRaw = Callable[[str, dict[str, Any]], Awaitable[None]]
log = logging.getLogger("carerelay.outbox")


def pending(events: Sequence[Event], now: datetime) -> Document:
    """Fields to `$set` beside a state change: its events, waiting to be published, with the
    trace they belong to so that a relayed publish still continues it."""
    trace = trace_headers()
    return {
        OUTBOX: [
            {"routing_key": e.routing_key, "body": e.model_dump(mode="json")}
            | ({"trace": trace} if trace else {})
            for e in events
        ],
        OUTBOX_AT: now,
    }


class Flush(Enum):
    published = "published"
    deferred = "deferred"  # the broker was unreachable; the relay will publish it
    refused = "refused"  # the broker refused it (a queue is full); the relay will retry


class Outbox:
    def __init__(
        self, collection: AsyncCollection[Document], publish: PublishRaw, timeout_s: float = 3.0
    ) -> None:
        self._collection = collection
        self._publish = publish
        self._timeout_s = timeout_s

    async def flush(self, doc_id: str, entries: Sequence[Document], stamp: datetime) -> Flush:
        """Publish a document's pending events and clear them; anything but `published` leaves
        them to the relay."""
        try:
            for entry in entries:
                with continued(entry.get("trace")):
                    await asyncio.wait_for(
                        self._publish(entry["routing_key"], entry["body"]), self._timeout_s
                    )
        except aiormq.exceptions.DeliveryError:
            log.warning(
                "publish refused by the broker (queue full); the relay retries",
                extra={"case_id": doc_id},
            )
            return Flush.refused
        except Exception as exc:
            log.warning(
                "publish deferred to the outbox relay: %s",
                type(exc).__name__,
                extra={"case_id": doc_id},
            )
            return Flush.deferred
        # Only clear what we published: a later change may have queued new events meanwhile.
        await self._collection.update_one(
            {"_id": doc_id, OUTBOX_AT: stamp}, {"$unset": {OUTBOX: "", OUTBOX_AT: ""}}
        )
        return Flush.published

    async def flush_events(self, doc_id: str, events: Sequence[Event], stamp: datetime) -> Flush:
        return await self.flush(doc_id, pending(events, stamp)[OUTBOX], stamp)

    async def relay(self, older_than: datetime, limit: int = 500) -> dict[Flush, int]:
        """Publish every outbox older than `older_than`; how many documents ended which way.
        Stops at the first refusal: the queue is full, the rest would be refused too."""
        cursor = self._collection.find(
            {OUTBOX_AT: {"$lt": older_than}}, {OUTBOX: 1, OUTBOX_AT: 1}, limit=limit
        )
        outcomes = dict.fromkeys(Flush, 0)
        async for doc in cursor:
            outcome = await self.flush(doc["_id"], doc.get(OUTBOX, []), doc[OUTBOX_AT])
            outcomes[outcome] += 1
            if outcome is Flush.refused:
                break
        return outcomes
