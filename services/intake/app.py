"""The intake service: HTTP and AMQP in, a stored case and a `hardship.reported` event out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from fastapi import FastAPI

from shared.contracts import HardshipReport
from shared.messaging import publish_event
from shared.service import Runtime, configure_logging, create_app
from shared.topology import EVENTS, INTAKE_REPORTS, work_queue

from .api import ReportAccepted, install_error_handler, router
from .metrics import IntakeMetrics
from .repository import MongoCaseRepository
from .settings import IntakeSettings
from .usecases import Intake

log = logging.getLogger("carerelay.intake")


def build_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging(settings.log_level)
    runtime = Runtime("intake", settings)
    metrics = IntakeMetrics.create(runtime.registry)
    cases = MongoCaseRepository(runtime.db)
    intake = Intake(
        cases,
        lambda event: publish_event(runtime.broker, event),
        settings.case_id_key.get_secret_value().encode(),
        metrics,
        settings.person_key_secret.get_secret_value().encode(),
    )

    @runtime.broker.subscriber(
        work_queue(INTAKE_REPORTS, settings.queue_type, settings.delivery_limit),
        EVENTS,
        title="intake.reports",
        description="Hotlines may post a HardshipReport here over AMQP.",
    )
    async def on_report(report: HardshipReport) -> ReportAccepted:
        accepted = await intake.accept(report)
        return ReportAccepted(
            case_id=accepted.case_id, status_url=accepted.status_url, duplicate=not accepted.created
        )

    relay_task: asyncio.Task[None] | None = None

    async def relay_forever() -> None:
        grace = timedelta(seconds=settings.outbox_grace_s)
        while True:
            try:
                await intake.relay_pending(grace)
            except Exception:
                log.exception("outbox relay pass failed")
            await asyncio.sleep(settings.outbox_relay_interval_s)

    async def start_relay() -> None:
        nonlocal relay_task
        relay_task = asyncio.create_task(relay_forever())

    async def stop_relay() -> None:
        if relay_task is not None:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task

    app = create_app(
        runtime,
        title="CareRelay intake",
        description="Hotlines post hardship reports here; each becomes a tracked case.",
        consumes=[INTAKE_REPORTS],
        on_startup=[start_relay],
        on_shutdown=[stop_relay],
    )
    install_error_handler(app, metrics)
    app.include_router(router(intake, cases))
    return app
