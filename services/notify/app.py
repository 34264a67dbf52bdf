"""The notify service: tells helpers, people, agencies, the duty desk and the reporting hotline,
and records every attempt."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitQueue

from shared.contracts import OutreachFailed, OutreachRetry, OutreachSent, RegistryChanged
from shared.messaging import document_publications, publish_event
from shared.service import Periodic, Runtime, configure_logging, create_app
from shared.topology import (
    DELAYS,
    EVENTS,
    NOTIFY_EVENT_ROUTES,
    NOTIFY_RETRY,
    Route,
    declare_retry_queues,
    registry_queue,
    retry_delay_queue,
    retry_delays_ms,
    work_queue,
)

from .api import receipts_router
from .channels import build_channels
from .directory import HelperDirectory
from .domain import Context, Defaults
from .metrics import NotifyMetrics
from .repository import MongoOutreachStore
from .retry import RetryPolicy
from .settings import NotifySettings
from .templates import labels
from .usecases import NOTIFY_EVENTS, Notify


def build_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    configure_logging(settings.log_level, "notify")
    runtime = Runtime("notify", settings)
    broker = runtime.broker
    document_publications(broker, OutreachSent, OutreachFailed)
    channels = build_channels(settings)
    store = MongoOutreachStore(runtime.db, runtime.cipher)
    directory = HelperDirectory(store.contacts)
    metrics = NotifyMetrics.create(runtime.registry)
    delays = retry_delays_ms(settings.retry_base_s, settings.max_attempts)

    async def schedule(retry: OutreachRetry, delay_ms: int, expiration_ms: int) -> None:
        await broker.publish(
            retry.model_dump(mode="json"),
            exchange=DELAYS,
            routing_key=retry_delay_queue(delay_ms).name,
            persist=True,
            expiration=timedelta(milliseconds=expiration_ms),
            message_id=retry.event_id,
            content_type="application/json",
            timeout=10,
        )

    notify = Notify(
        store,
        directory,
        channels,
        Context(
            labels(settings.locale),
            Defaults(
                team_webhook=settings.team_webhook,
                duty_desk_webhook=settings.duty_desk_webhook,
                case_url_base=f"{settings.public_base_url.rstrip('/')}/v1/cases/",
            ),
            {name: channel.info for name, channel in channels.items()},
            frozenset(settings.hotline_endpoints()) if "hotline" in channels else frozenset(),
        ),
        lambda event: publish_event(broker, event),
        schedule,
        metrics,
        RetryPolicy(settings.max_attempts, delays),
        settings.locale,
    )

    def queue(route: Route) -> RabbitQueue:
        return work_queue(route, settings.queue_options)

    for route in NOTIFY_EVENT_ROUTES:

        @broker.subscriber(queue(route), EVENTS, ack_policy=AckPolicy.NACK_ON_ERROR)
        async def on_event(body: dict[str, Any]) -> None:
            await notify.handle(NOTIFY_EVENTS.validate_python(body))

    @broker.subscriber(queue(NOTIFY_RETRY), DELAYS, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def on_retry(retry: OutreachRetry) -> None:
        await notify.resume(retry)

    @broker.subscriber(registry_queue(uuid.uuid4().hex[:12], "notify"), EVENTS)
    async def on_registry_changed(change: RegistryChanged) -> None:
        await directory.refresh(change.helper_ids)
        metrics.helpers_cached.set(len(directory))

    async def reload_directory() -> None:
        await directory.reload()
        metrics.helpers_cached.set(len(directory))

    reloads = Periodic("notify-registry-reload", settings.registry_refresh_s, reload_directory)
    interrupted = timedelta(seconds=settings.interrupted_after_s)
    sweeps = Periodic(
        "notify-interrupted-sweep",
        settings.interrupted_sweep_s,
        lambda: notify.sweep_interrupted(interrupted),
    )

    async def start() -> None:
        await store.ensure_indexes()
        await declare_retry_queues(broker, delays, settings.queue_type)
        await reload_directory()

    async def stop() -> None:
        for channel in channels.values():
            await channel.aclose()

    app = create_app(
        runtime,
        title="CareRelay notify",
        description="Outreach to helpers, people, agencies, the duty desk and the reporting "
        "hotline over real channels; delivery receipts in.",
        on_startup=[start],
        on_shutdown=[stop],
        loops=[reloads, sweeps],
    )
    token = settings.receipt_token.get_secret_value() if settings.receipt_token else None
    app.include_router(receipts_router(notify, settings.sms_provider, token))
    return app
