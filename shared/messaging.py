"""Broker construction and publishing, the same way in every service."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import aio_pika.exceptions
import aiormq.exceptions
from faststream import BaseMiddleware
from faststream.exceptions import RejectMessage
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.rabbit.schemas import Channel
from opentelemetry import trace
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure

from shared.contracts import Event
from shared.logging_json import case_context, person_values, redacting
from shared.settings import CommonSettings
from shared.topology import EVENTS


class RejectInvalidMessages(BaseMiddleware):
    """A message that cannot be parsed will never succeed: dead-letter it at once, not in a loop."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        try:
            return await call_next(msg)
        except (ValidationError, json.JSONDecodeError) as exc:
            raise RejectMessage from exc


class CaseContext(BaseMiddleware):
    """Log lines and the span of a consumed message carry its case id; the personal data of a
    report consumed over AMQP is masked in anything logged while it is handled."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        try:
            body = await msg.decode()
        except Exception:  # not JSON: the handler's own parse rejects it
            body = None
        if not isinstance(body, dict):
            return await call_next(msg)
        case_id = body.get("case_id") if isinstance(body.get("case_id"), str) else None
        if case_id:
            trace.get_current_span().set_attribute("carerelay.case_id", case_id)
        with case_context(case_id), redacting(person_values(body)):
            return await call_next(msg)


# Failures of the infrastructure, not of the message: waiting and trying again will succeed.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,  # MongoDB unreachable, failing over, or timing out
    ConnectionError,  # includes aiormq's AMQPConnectionError
    aiormq.exceptions.DeliveryError,  # the broker refused a publish: a queue is full
    aio_pika.exceptions.ChannelInvalidStateError,
    TimeoutError,
)
log = logging.getLogger("carerelay.messaging")


def retry_transient_errors(deadline_s: float) -> Callable[..., BaseMiddleware]:
    """Retry a handler in place, with backoff and jitter, while the database or the broker is
    unreachable, so an outage does not spend a message's delivery attempts and dead-letter
    healthy work. Safe because every handler is idempotent."""

    class RetryTransientErrors(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            delay, waited = 0.1, 0.0
            while True:
                try:
                    return await call_next(msg)
                except TRANSIENT_ERRORS as exc:
                    if waited >= deadline_s:
                        raise
                    pause = random.uniform(delay / 2, delay)
                    log.warning("transient %s; retrying in %.1fs", type(exc).__name__, pause)
                    await asyncio.sleep(pause)
                    waited += pause
                    delay = min(delay * 2, 5.0)

    return RetryTransientErrors


def build_broker(
    settings: CommonSettings, registry: CollectorRegistry, app_name: str
) -> RabbitBroker:
    return RabbitBroker(
        settings.amqp_url,
        default_channel=Channel(prefetch_count=settings.prefetch, publisher_confirms=True),
        graceful_timeout=15.0,
        reconnect_interval=1.0,
        fail_fast=False,
        app_id=app_name,
        logger=logging.getLogger(f"carerelay.{app_name}.broker"),
        # "Received" and "Processed" for every message are debugging detail; at INFO they cost
        # more than the hop itself (bench/relay.py), and errors are logged whatever the level.
        log_level=logging.DEBUG,
        # An unexpected error requeues the message; the quorum queue's delivery limit then
        # dead-letters a message that keeps failing.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        middlewares=(
            RabbitTelemetryMiddleware(),  # outermost: the rest runs inside the consume span
            RabbitPrometheusMiddleware(registry=registry, app_name=app_name),
            CaseContext,
            RejectInvalidMessages,
            retry_transient_errors(settings.transient_retry_s),
        ),
    )


class Announced(Protocol):
    routing_key: ClassVar[str]


def document_publications(broker: RabbitBroker, *events: type[Announced]) -> None:
    """Declare what a service publishes, for its AsyncAPI document (`publish_event` sends)."""
    for event in events:
        broker.publisher(
            exchange=EVENTS,
            routing_key=event.routing_key,
            schema=event,
            title=f"{EVENTS.name}:{event.routing_key}",
            description=(event.__doc__ or "").strip() or None,
        )


async def publish_event(broker: RabbitBroker, event: Event) -> None:
    """Publish persistently with publisher confirms; raises if the broker did not confirm."""
    await publish_body(broker, event.routing_key, event.model_dump(mode="json"))


async def publish_body(broker: RabbitBroker, routing_key: str, body: dict[str, Any]) -> None:
    await broker.publish(
        body,
        exchange=EVENTS,
        routing_key=routing_key,
        persist=True,
        message_id=str(body.get("event_id", "")) or None,
        message_type=routing_key,
        content_type="application/json",
        timeout=10,
    )
