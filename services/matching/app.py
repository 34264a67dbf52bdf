"""The matching service: decides who goes for each case and follows the offer through."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import FastAPI
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitQueue

from shared.audit import MongoAuditLog
from shared.contracts import (
    CaseAccepted,
    CaseAssigned,
    CaseDeclined,
    CaseEscalated,
    CaseResolved,
    HardshipReported,
    OfferAnswer,
    RegistryChanged,
    ResolveCase,
    utcnow,
)
from shared.messaging import document_publications, publish_body, publish_event
from shared.outbox import Outbox
from shared.service import Periodic, Runtime, configure_logging, create_app
from shared.storage import CASES
from shared.topology import (
    EVENTS,
    MATCHING_ANSWERS,
    MATCHING_REPORTED,
    MATCHING_RESOLUTIONS,
    Route,
    registry_queue,
    work_queue,
)

from .api import offers_router, registry_router
from .index import HelperIndex
from .links import OfferLinks
from .metrics import MatchingMetrics
from .policy import Policy
from .repository import MongoCaseStore, MongoHelperStore, MongoPeopleStore
from .settings import MatchingSettings
from .usecases import Matching


def build_app(settings: MatchingSettings | None = None) -> FastAPI:
    settings = settings or MatchingSettings()
    configure_logging(settings.log_level, "matching")
    runtime = Runtime("matching", settings)
    broker, db = runtime.broker, runtime.db
    document_publications(
        broker,
        CaseAssigned,
        CaseEscalated,
        CaseAccepted,
        CaseDeclined,
        CaseResolved,
        RegistryChanged,
    )
    outbox = Outbox(
        db[CASES],
        lambda key, body: publish_body(broker, key, body),
        routing_keys=[e.routing_key for e in (CaseAssigned, CaseEscalated, CaseAccepted,
                                              CaseDeclined, CaseResolved)],
    )  # fmt: skip
    links = OfferLinks(settings.offer_link_key.get_secret_value(), settings.public_url)
    matching = Matching(
        MongoHelperStore(db),
        MongoCaseStore(db),
        MongoPeopleStore(db),
        HelperIndex(),
        Policy.load(settings.policy_file),
        outbox,
        lambda event: publish_event(broker, event),
        links,
        MatchingMetrics.create(runtime.registry),
        runtime.cipher,
        settings.stored_candidates,
        settings.stored_exclusions,
        settings.ack_window_scale,
    )

    def queue(route: Route) -> RabbitQueue:
        return work_queue(route, settings.queue_options)

    @broker.subscriber(queue(MATCHING_REPORTED), EVENTS, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def on_reported(event: HardshipReported) -> None:
        await matching.on_reported(event)

    @broker.subscriber(queue(MATCHING_ANSWERS), EVENTS, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def on_answer(answer: OfferAnswer) -> None:
        await matching.answer(answer)

    @broker.subscriber(queue(MATCHING_RESOLUTIONS), EVENTS, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def on_resolve(command: ResolveCase) -> None:
        await matching.resolve(command)

    @broker.subscriber(registry_queue(uuid.uuid4().hex[:12]), EVENTS, ack_policy=AckPolicy.ACK)
    async def on_registry_changed(change: RegistryChanged) -> None:
        await matching.on_registry_changed(change.helper_ids)

    async def relay() -> None:
        await outbox.relay(utcnow() - timedelta(seconds=settings.outbox_grace_s))

    loops = [
        Periodic("registry refresh", settings.registry_refresh_s, matching.refresh_index),
        Periodic("offer timeouts", settings.sweep_interval_s, matching.sweep_timeouts),
        Periodic("outbox relay", settings.outbox_relay_interval_s, relay),
        Periodic("open case count", settings.case_count_interval_s, matching.count_open_cases),
        Periodic(
            "claim reconciliation",
            settings.reconcile_interval_s,
            lambda: matching.reconcile_claims(timedelta(seconds=settings.reconcile_grace_s)),
        ),
    ]

    app = create_app(
        runtime,
        title="CareRelay matching",
        description="Triage and assignment of reported cases; offers; the helper registry.",
        on_startup=[matching.refresh_index, matching.count_open_cases],
        loops=loops,
    )
    app.include_router(
        registry_router(db, broker, settings.person_key_secret.get_secret_value().encode())
    )
    app.include_router(offers_router(matching, links, MongoCaseStore(db), MongoAuditLog(db)))
    return app
