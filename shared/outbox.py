"""The transactional outbox, kept inside the case document itself.

A state change and the events announcing it are written in one single-document update (atomic
on any MongoDB), then published with confirms and cleared. If the broker is down or the process
dies in between, a relay in every replica publishes what is still pending. Consumers are
idempotent by event id, so an event published twice does no harm; one never published would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import aiormq.exceptions
from pymongo import UpdateOne
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
    """With `clear_every_s`, published marks are cleared by one bulk write every so often
    instead of one write each (start() and stop() run that loop). A mark left by a crash is
    only republished by the relay: harmless, as consumers are idempotent."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        publish: PublishRaw,
        timeout_s: float = 3.0,
        clear_every_s: float | None = None,
        routing_keys: Collection[str] | None = None,
    ) -> None:
        self._collection = collection
        self._publish = publish
        self._timeout_s = timeout_s
        self._clear_every_s = clear_every_s
        # What this service publishes: its relay leaves other services' events to theirs.
        self._routing_keys = sorted(routing_keys) if routing_keys is not None else None
        # Documents this process is publishing (or has published and not yet cleared): its
        # relay must not publish them a second time while a slow broker confirms them.
        self._in_flight: set[str] = set()
        self._to_clear: list[tuple[Document, Document]] = []
        self._clearing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._clear_every_s is not None:
            self._clearing = asyncio.create_task(self._clear_loop(self._clear_every_s))

    async def stop(self) -> None:
        if self._clearing is not None:
            self._clearing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clearing
            self._clearing = None
        await self._clear_pending()

    async def _clear_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self._clear_pending()

    async def _clear_pending(self) -> None:
        batch, self._to_clear = self._to_clear, []
        if not batch:
            return
        try:
            await self._collection.bulk_write([UpdateOne(f, u) for f, u in batch], ordered=False)
        except Exception as exc:  # the marks stay; the relay publishes those events again
            log.warning("clearing %d outbox marks failed: %s", len(batch), type(exc).__name__)
        finally:
            self._in_flight.difference_update(f["_id"] for f, _ in batch)

    @staticmethod
    def _clear(doc_id: str, stamp: datetime) -> tuple[Document, Document]:
        # Only clear what we published: a later change may have queued new events meanwhile.
        return {"_id": doc_id, OUTBOX_AT: stamp}, {"$unset": {OUTBOX: "", OUTBOX_AT: ""}}

    async def flush(self, doc_id: str, entries: Sequence[Document], stamp: datetime) -> Flush:
        """Publish a document's pending events and clear them; anything but `published` leaves
        them to the relay."""
        self._in_flight.add(doc_id)
        try:
            for entry in entries:
                with continued(entry.get("trace")):
                    await asyncio.wait_for(
                        self._publish(entry["routing_key"], entry["body"]), self._timeout_s
                    )
        except aiormq.exceptions.DeliveryError:
            self._in_flight.discard(doc_id)
            log.warning(
                "publish refused by the broker (queue full); the relay retries",
                extra={"case_id": doc_id},
            )
            return Flush.refused
        except BaseException as exc:
            self._in_flight.discard(doc_id)
            if not isinstance(exc, Exception):
                raise
            log.warning(
                "publish deferred to the outbox relay: %s",
                type(exc).__name__,
                extra={"case_id": doc_id},
            )
            return Flush.deferred
        clear = self._clear(doc_id, stamp)
        if self._clearing is not None:
            self._to_clear.append(clear)
        else:
            try:
                await self._collection.update_one(*clear)
            finally:
                self._in_flight.discard(doc_id)
        return Flush.published

    async def flush_events(self, doc_id: str, events: Sequence[Event], stamp: datetime) -> Flush:
        return await self.flush(doc_id, pending(events, stamp)[OUTBOX], stamp)

    async def relay(self, older_than: datetime, limit: int = 500) -> dict[Flush, int]:
        """Publish every outbox older than `older_than`; how many documents ended which way.
        Stops at the first refusal: the queue is full, the rest would be refused too."""
        query: Document = {OUTBOX_AT: {"$lt": older_than}}
        if self._routing_keys is not None:
            query[f"{OUTBOX}.routing_key"] = {"$in": self._routing_keys}
        cursor = self._collection.find(query, {OUTBOX: 1, OUTBOX_AT: 1}, limit=limit)
        outcomes = dict.fromkeys(Flush, 0)
        async for doc in cursor:
            if doc["_id"] in self._in_flight:
                continue
            outcome = await self.flush(doc["_id"], doc.get(OUTBOX, []), doc[OUTBOX_AT])
            outcomes[outcome] += 1
            if outcome is Flush.refused:
                break
        return outcomes
