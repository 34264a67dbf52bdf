"""Reaching people: plan (pure), then for each message try its routes in order, recording each
attempt on the case before sending so a redelivered event never sends the same message twice."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from shared.contracts import (
    CaseAssigned,
    CaseEscalated,
    Event,
    OutreachFailed,
    OutreachSent,
    utcnow,
)
from shared.labels import labels
from shared.pii import mask_address

from .channels import Channel, OutboundMessage
from .domain import Defaults, PlannedMessage, plan
from .metrics import NotifyMetrics
from .repository import OutreachStore
from .templates import render

log = logging.getLogger("carerelay.notify")

Publish = Callable[[Event], Awaitable[None]]
KEY_NAMESPACE = uuid.UUID("7d1f3c5e-4c1a-4f7e-9a53-0c9e1f7d2b11")


class Notify:
    def __init__(
        self,
        store: OutreachStore,
        channels: Mapping[str, Channel],
        defaults: Defaults,
        publish: Publish,
        metrics: NotifyMetrics,
        locale: str = "zh-CN",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._channels = channels
        self._defaults = defaults
        self._publish = publish
        self._metrics = metrics
        self._locale = locale
        self._clock = clock

    async def on_decided(self, event: CaseAssigned | CaseEscalated) -> None:
        contact = await self._store.contact_of(event.helper.helper_id)
        messages = plan(
            event, contact, labels(self._locale), self._defaults, frozenset(self._channels)
        )
        for message in messages:
            await self._deliver(event, message)

    async def _deliver(self, event: CaseAssigned | CaseEscalated, message: PlannedMessage) -> None:
        rendered = render(message.template, message.facts, self._locale)
        last_error = "no_route"
        for route in message.routes:
            key = f"{event.case_id}:{message.key(route)}"
            recorded = await self._store.begin(
                event.case_id,
                {
                    "key": key,
                    "purpose": message.purpose,
                    "recipient_kind": message.recipient_kind,
                    "channel": route.channel,
                    "recipient": mask_address(route.channel, route.address),
                    "status": "sending",
                    "at": self._clock(),
                },
            )
            if recorded == "failed":
                continue  # an earlier delivery of this event tried this route; try the next
            if recorded is not None:
                return  # sent, possibly sent, or no such case: never send twice
            result = await self._channels[route.channel].send(
                OutboundMessage(
                    recipient=route.address,
                    subject=rendered.subject,
                    text=rendered.text,
                    idempotency_key=key,
                    markdown=None,
                    mentioned_mobiles=message.mentioned_mobiles,
                )
            )
            now = self._clock()
            await self._store.finish(
                event.case_id,
                key,
                {
                    "status": "sent" if result.ok else "failed",
                    "error": result.error,
                    "provider_id": result.provider_id,
                    "finished_at": now,
                },
            )
            self._metrics.sends.labels(
                route.channel, message.purpose, "sent" if result.ok else "failed"
            ).inc()
            if result.ok:
                self._metrics.report_to_outreach.observe(
                    max(0.0, (now - event.received_at).total_seconds())
                )
                await self._publish(
                    OutreachSent(
                        event_id=uuid.uuid5(KEY_NAMESPACE, key).hex,
                        case_id=event.case_id,
                        channel=route.channel,
                        purpose=message.purpose,
                        recipient_kind=message.recipient_kind,
                    )
                )
                return
            last_error = result.error or "failed"
            log.warning(
                "case %s: %s via %s failed (%s); trying the next channel",
                event.case_id,
                message.purpose,
                route.channel,
                last_error,
            )
        await self._publish(
            OutreachFailed(
                event_id=uuid.uuid5(KEY_NAMESPACE, f"{event.case_id}:{message.purpose}:failed").hex,
                case_id=event.case_id,
                channel="all",
                purpose=message.purpose,
                recipient_kind=message.recipient_kind,
                error=last_error,
            )
        )
