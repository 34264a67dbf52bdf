"""The notify service: tells helpers, agencies and the duty desk, and records every attempt."""

from __future__ import annotations

from fastapi import FastAPI
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitQueue

from shared.contracts import CaseAssigned, CaseEscalated
from shared.messaging import publish_event
from shared.service import Runtime, configure_logging, create_app
from shared.topology import EVENTS, NOTIFY_ASSIGNED, NOTIFY_ESCALATED, Route, work_queue

from .channels import build_channels
from .domain import Defaults
from .metrics import NotifyMetrics
from .repository import MongoOutreachStore
from .settings import NotifySettings
from .usecases import Notify


def build_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    configure_logging(settings.log_level)
    runtime = Runtime("notify", settings)
    broker = runtime.broker
    channels = build_channels(settings)
    notify = Notify(
        MongoOutreachStore(runtime.db),
        channels,
        Defaults(
            team_webhook=settings.team_webhook,
            duty_desk_webhook=settings.duty_desk_webhook,
            case_url_base=f"{settings.public_base_url.rstrip('/')}/v1/cases/",
        ),
        lambda event: publish_event(broker, event),
        NotifyMetrics.create(runtime.registry),
        settings.locale,
    )

    def queue(route: Route) -> RabbitQueue:
        return work_queue(route, settings.queue_options)

    @broker.subscriber(queue(NOTIFY_ASSIGNED), EVENTS, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def on_assigned(event: CaseAssigned) -> None:
        await notify.on_decided(event)

    @broker.subscriber(queue(NOTIFY_ESCALATED), EVENTS, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def on_escalated(event: CaseEscalated) -> None:
        await notify.on_decided(event)

    async def close_channels() -> None:
        for channel in channels.values():
            await channel.aclose()

    return create_app(
        runtime,
        title="CareRelay notify",
        description="Outreach to helpers, agencies and the duty desk over real channels.",
        on_shutdown=[close_channels],
    )
