"""Broker construction and publishing, the same way in every service."""

from __future__ import annotations

import json
from typing import Any

from faststream import BaseMiddleware
from faststream.exceptions import RejectMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.rabbit.schemas import Channel
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared.contracts import Event
from shared.settings import CommonSettings
from shared.topology import EVENTS


class RejectInvalidMessages(BaseMiddleware):
    """A message that cannot be parsed will never succeed: dead-letter it at once, not in a loop."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        try:
            return await call_next(msg)
        except (ValidationError, json.JSONDecodeError) as exc:
            raise RejectMessage from exc


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
        middlewares=(
            RabbitPrometheusMiddleware(registry=registry, app_name=app_name),
            RejectInvalidMessages,
        ),
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
