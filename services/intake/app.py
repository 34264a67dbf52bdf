"""The intake service: HTTP and AMQP in, a stored case and a `hardship.reported` event out."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import FastAPI

from shared.audit import MongoAuditLog
from shared.contracts import HardshipReport, HardshipReported, ResolveCase, utcnow
from shared.messaging import document_publications, publish_body
from shared.outbox import Flush, Outbox
from shared.service import Periodic, Runtime, configure_logging, create_app
from shared.storage import CASES
from shared.topology import EVENTS, INTAKE_REPORTS, work_queue

from .api import ReportAccepted, install_error_handler, router
from .metrics import IntakeMetrics
from .repository import MongoCaseRepository
from .settings import IntakeSettings
from .usecases import Intake, Overloaded

# Hotline systems on AMQP are authenticated by the broker (their own RabbitMQ user and vhost).
AMQP_ACTOR = "amqp"


def build_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging(settings.log_level, "intake")
    runtime = Runtime("intake", settings)
    document_publications(runtime.broker, HardshipReported)
    metrics = IntakeMetrics.create(runtime.registry)
    cases = MongoCaseRepository(runtime.db)
    outbox = Outbox(
        runtime.db[CASES],
        lambda key, body: publish_body(runtime.broker, key, body),
        clear_every_s=settings.outbox_clear_interval_s,
        routing_keys=[HardshipReported.routing_key],
    )
    intake = Intake(
        cases,
        outbox,
        settings.case_id_key.get_secret_value().encode(),
        metrics,
        runtime.cipher,
        runtime.hash_key,
        shed_for_s=settings.shed_for_s,
    )

    @runtime.broker.subscriber(
        work_queue(INTAKE_REPORTS, settings.queue_options),
        EVENTS,
        title="intake.reports",
        description="Hotlines may post a HardshipReport here over AMQP.",
    )
    async def on_report(report: HardshipReport) -> ReportAccepted:
        while True:  # a report on AMQP is already durable: wait in the queue, don't refuse it
            try:
                accepted = await intake.accept(report, actor=AMQP_ACTOR)
                break
            except Overloaded as busy:
                await asyncio.sleep(busy.retry_after_s)
        return ReportAccepted(
            case_id=accepted.case_id,
            status_url=accepted.status_url,
            duplicate=not accepted.created,
        )

    async def relay() -> None:
        outcomes = await outbox.relay(utcnow() - timedelta(seconds=settings.outbox_grace_s))
        metrics.outbox_relayed.inc(outcomes[Flush.published])
        if outcomes[Flush.refused]:
            intake.note(Flush.refused)

    relay_loop = Periodic("outbox relay", settings.outbox_relay_interval_s, relay)
    app = create_app(
        runtime,
        title="CareRelay intake",
        description="Hotlines post hardship reports here; each becomes a tracked case.",
        on_startup=[outbox.start],
        on_shutdown=[outbox.stop],
        loops=[relay_loop],
    )
    install_error_handler(app, metrics)

    async def send(command: ResolveCase) -> None:
        await publish_body(runtime.broker, command.routing_key, command.model_dump(mode="json"))

    app.include_router(router(intake, cases, MongoAuditLog(runtime.db), runtime.cipher, send))
    return app
