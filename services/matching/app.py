"""The matching service: decides who goes for each reported case."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from fastapi import FastAPI
from faststream.middlewares import AckPolicy

from shared.contracts import HardshipReported, RegistryChanged
from shared.messaging import publish_event
from shared.service import Runtime, configure_logging, create_app
from shared.topology import EVENTS, MATCHING_REPORTED, registry_queue, work_queue

from .api import router
from .index import HelperIndex
from .metrics import MatchingMetrics
from .policy import Policy
from .repository import MongoCaseStore, MongoHelperStore
from .settings import MatchingSettings
from .usecases import Matching

log = logging.getLogger("carerelay.matching")


def build_app(settings: MatchingSettings | None = None) -> FastAPI:
    settings = settings or MatchingSettings()
    configure_logging(settings.log_level)
    runtime = Runtime("matching", settings)
    broker = runtime.broker
    matching = Matching(
        MongoHelperStore(runtime.db),
        MongoCaseStore(runtime.db),
        HelperIndex(),
        Policy.load(settings.policy_file),
        lambda event: publish_event(broker, event),
        MatchingMetrics.create(runtime.registry),
        settings.stored_candidates,
        settings.stored_exclusions,
    )

    @broker.subscriber(
        work_queue(MATCHING_REPORTED, settings.queue_type, settings.delivery_limit),
        EVENTS,
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_reported(event: HardshipReported) -> None:
        await matching.on_reported(event)

    @broker.subscriber(registry_queue(uuid.uuid4().hex[:12]), EVENTS, ack_policy=AckPolicy.ACK)
    async def on_registry_changed(_: RegistryChanged) -> None:
        await matching.refresh_index()

    refresher: asyncio.Task[None] | None = None

    async def refresh_forever() -> None:
        while True:
            await asyncio.sleep(settings.registry_refresh_s)
            try:
                await matching.refresh_index()
            except Exception:
                log.exception("registry refresh failed; keeping the previous index")

    async def start() -> None:
        nonlocal refresher
        await matching.refresh_index()
        refresher = asyncio.create_task(refresh_forever())

    async def stop() -> None:
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher

    app = create_app(
        runtime,
        title="CareRelay matching",
        description="Triage and assignment of reported cases; the helper registry.",
        consumes=[MATCHING_REPORTED],
        on_startup=[start],
        on_shutdown=[stop],
    )
    app.include_router(
        router(runtime.db, broker, settings.person_key_secret.get_secret_value().encode())
    )
    return app
