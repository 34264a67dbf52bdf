"""Reaching people: plan (pure), then send each message over its channels in order. Every
attempt is recorded on the case before it is sent, keyed by case, message and attempt number,
so a redelivered event or retry finds the record and never sends the same message twice.
A failed attempt is retried through a RabbitMQ delay queue (it survives restarts); after the
last attempt on a channel comes the next channel; after the last channel, a dead letter."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from shared.contracts import (
    CaseAccepted,
    CaseAssigned,
    CaseEscalated,
    CaseFacts,
    CaseResolved,
    Event,
    HardshipReported,
    OutreachDeadLetter,
    OutreachFailed,
    OutreachRetry,
    OutreachSent,
    utcnow,
)
from shared.pii import mask_address
from shared.storage import Document

from .channels import Channel, OutboundMessage, SendResult
from .directory import HelperDirectory
from .domain import HELPER_PURPOSES, HOTLINE, Context, PlannedMessage, Route, hotline_status, plan
from .metrics import NotifyMetrics
from .repository import OutreachStore, attempt_record
from .retry import Fallback, GiveUp, Retry, RetryPolicy, Step, after_failure
from .templates import Rendered, render

log = logging.getLogger("carerelay.notify")

Publish = Callable[[Event], Awaitable[None]]
Schedule = Callable[[OutreachRetry, int, int], Awaitable[None]]  # retry, queue delay, expiration
SENT_MEMORY = 10_000  # attempt keys remembered per process; far more than are ever in flight
KEY_NAMESPACE = uuid.UUID("7d1f3c5e-4c1a-4f7e-9a53-0c9e1f7d2b11")

NotifyEvent = HardshipReported | CaseAssigned | CaseEscalated | CaseAccepted | CaseResolved
NOTIFY_EVENTS: TypeAdapter[NotifyEvent] = TypeAdapter(
    Annotated[NotifyEvent, Field(discriminator="event_type")]
)


def _id(*parts: str) -> str:
    return uuid.uuid5(KEY_NAMESPACE, ":".join(parts)).hex


class Notify:
    def __init__(
        self,
        store: OutreachStore,
        directory: HelperDirectory,
        channels: Mapping[str, Channel],
        ctx: Context,
        publish: Publish,
        schedule: Schedule,
        metrics: NotifyMetrics,
        policy: RetryPolicy,
        locale: str = "zh-CN",
        clock: Callable[[], datetime] = utcnow,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._directory = directory
        self._channels = channels
        self._ctx = ctx
        self._publish = publish
        self._schedule = schedule
        self._metrics = metrics
        self._policy = policy
        self._locale = locale
        self._clock = clock
        self._draw = draw
        # What this process has handed to a channel, by attempt key. When a database write is
        # retried after its acknowledgement was lost, this tells "recorded but never sent"
        # (send now) from "sent, result not yet recorded" (record it; never send again).
        self._owner = uuid.uuid4().hex
        self._sent: OrderedDict[str, SendResult] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[SendResult]] = {}

    # ------------------------------------------------------------------ entry points

    async def handle(self, event: NotifyEvent) -> None:
        """Everything an event calls for, first try of each message."""
        if hotline_status(event) is not None and event.source not in self._ctx.hotlines:
            self._metrics.callbacks.labels("unconfigured").inc()
        for message in await self._plan(event):
            await self._deliver(event, message, Step())

    async def resume(self, retry: OutreachRetry) -> None:
        """A retry back from its delay queue (or replayed by an operator)."""
        event = NOTIFY_EVENTS.validate_python(retry.event)
        wanted = (retry.purpose, retry.recipient_kind, retry.recipient_id)
        for message in await self._plan(event):
            if (message.purpose, message.recipient_kind, message.recipient_id) == wanted:
                step = Step(retry.route, retry.attempt, retry.route_attempt)
                await self._deliver(event, message, step)
                return
        log.warning("case %s: %s is no longer planned; retry dropped", retry.case_id, wanted[0])

    async def sweep_interrupted(self, after: timedelta) -> int:
        """An attempt left `sending` by a process that died mid-send may or may not have
        arrived. Never resend it blindly (that could be the second message); hand it to an
        operator as a dead letter they can replay after checking, and say so."""
        now = self._clock()
        swept = 0
        for case in await self._store.unfinished(now - after):
            for attempt in case.get("outreach", []):
                stuck = attempt.get("status") == "sending" and attempt["at"] < now - after
                if not stuck or attempt["key"] in self._in_flight:
                    continue
                if await self._store.mark_interrupted(case["_id"], attempt["key"], now):
                    await self._report_interrupted(case, attempt, now)
                    swept += 1
        return swept

    async def _report_interrupted(self, case: Document, attempt: Document, now: datetime) -> None:
        purpose, channel = attempt["purpose"], attempt["channel"]
        log.error(
            "case %s: %s via %s was interrupted mid-send; dead-lettered for an operator",
            case["_id"],
            purpose,
            channel,
        )
        self._metrics.failed.labels(channel, purpose).inc()
        reference = {"source": case.get("source", ""), "external_id": case.get("external_id", "")}
        await self._publish(
            OutreachFailed(
                event_id=_id(attempt["key"], "interrupted"),
                case_id=case["_id"],
                channel=channel,
                purpose=purpose,
                recipient_kind=attempt["recipient_kind"],
                recipient_id=attempt.get("recipient_id", ""),
                error=INTERRUPTED,
                **reference,
            )
        )
        await self._store.dead_letter(
            OutreachDeadLetter(
                _id=f"{case['_id']}:{attempt.get('ref') or attempt['key']}",
                case_id=case["_id"],
                purpose=purpose,
                recipient_kind=attempt["recipient_kind"],
                recipient_id=attempt.get("recipient_id", ""),
                channels=[channel],
                error=INTERRUPTED,
                attempts=1,
                event=_event_behind(case, purpose),
                failed_at=now,
                **reference,
            )
        )

    async def receipt(self, channel: str, provider_id: str, delivered: bool, error: str) -> bool:
        status = "delivered" if delivered else "failed"
        receipt = {"status": status, "error": error[:80] or None, "at": self._clock()}
        matched = await self._store.receipt(provider_id, receipt)
        self._metrics.receipts.labels(channel, status if matched else "unmatched").inc()
        return matched

    # ------------------------------------------------------------------ planning

    async def _plan(self, event: NotifyEvent) -> list[PlannedMessage]:
        contact = None
        if isinstance(event, CaseAssigned | CaseEscalated | CaseAccepted):
            contact = await self._directory.contact(event.helper.helper_id)
        person, urgency = None, ""
        if isinstance(event, CaseAccepted):
            case = await self._store.case_person(event.case_id)
            if case is None:
                log.warning("case %s: accepted, but its person cannot be read", event.case_id)
            else:
                person, urgency = case.person, case.urgency
        return plan(event, self._ctx, contact, person, urgency)

    # ------------------------------------------------------------------ delivering

    async def _deliver(self, event: NotifyEvent, message: PlannedMessage, step: Step) -> None:
        rendered = render(message.template, message.facts, self._locale)
        while True:
            if step.route >= len(message.routes):
                await self._give_up(event, message, step, None, "no_route")
                return
            route = message.routes[step.route]
            key = f"{event.case_id}:{message.key(route, step.attempt)}"
            recorded = await self._store.begin(
                event.case_id,
                attempt_record(
                    key,
                    message.purpose,
                    message.recipient_kind,
                    route.channel,
                    mask_address(route.channel, route.address),
                    self._clock(),
                    self._owner,
                    message.ref,
                    message.recipient_id,
                ),
            )
            # Ours and unfinished: our own write landed but its answer was lost; see `_sent`.
            fresh = recorded is None or self._is_own_unfinished(recorded)
            if fresh or recorded is None:
                result = await self._send(event, message, rendered, route, key)
            elif recorded.get("status") == "failed":  # an earlier delivery got this far
                result = SendResult(
                    ok=False,
                    error=recorded.get("error"),
                    retryable=bool(recorded.get("retryable", True)),
                )
            else:
                return  # sent, being sent (maybe sent), or no such case: never send twice
            if result.ok:
                return
            error = result.error or "failed"
            if fresh:
                log.warning(
                    "case %s: %s via %s failed (%s), attempt %d",
                    event.case_id,
                    message.purpose,
                    route.channel,
                    error,
                    step.attempt,
                )
            following = after_failure(
                step, result.retryable, len(message.routes), self._policy, self._draw()
            )
            if isinstance(following, Retry):
                await self._retry_later(event, message, following, route.channel, key, fresh)
                return
            fallback = (
                message.routes[following.step.route].channel
                if isinstance(following, Fallback)
                else ""
            )
            await self._channel_failed(event, message, route, key, step, error, fallback, fresh)
            if isinstance(following, GiveUp):
                await self._give_up(event, message, step, route, error)
                return
            step = following.step

    async def _send(
        self,
        event: NotifyEvent,
        message: PlannedMessage,
        rendered: Rendered,
        route: Route,
        key: str,
    ) -> SendResult:
        result = self._sent.get(key) or await self._hand_over(event, message, rendered, route, key)
        now = self._clock()
        await self._store.finish(
            event.case_id,
            key,
            {
                "status": "sent" if result.ok else "failed",
                "error": result.error,
                "retryable": result.retryable,
                "provider_id": result.provider_id,
                "finished_at": now,
            },
        )
        outcome = "sent" if result.ok else "failed"
        self._metrics.sends.labels(route.channel, message.purpose, outcome).inc()
        if route.channel == HOTLINE:
            self._metrics.callbacks.labels(outcome).inc()
        if result.ok:
            if message.purpose in HELPER_PURPOSES and isinstance(
                event, CaseAssigned | CaseEscalated
            ):
                waited = (now - event.received_at).total_seconds()
                self._metrics.report_to_outreach.observe(max(0.0, waited))
            await self._publish(
                OutreachSent(
                    event_id=_id(key),
                    case_id=event.case_id,
                    source=event.source,
                    external_id=event.external_id,
                    channel=route.channel,
                    purpose=message.purpose,
                    recipient_kind=message.recipient_kind,
                )
            )
        return result

    async def _hand_over(
        self,
        event: NotifyEvent,
        message: PlannedMessage,
        rendered: Rendered,
        route: Route,
        key: str,
    ) -> SendResult:
        in_flight = self._in_flight.get(key)
        if in_flight is not None:  # a redelivery racing the first delivery in this process
            return await asyncio.shield(in_flight)
        self._in_flight[key] = asyncio.get_running_loop().create_future()
        try:
            self._metrics.attempts.labels(route.channel).inc()
            result = await self._channels[route.channel].send(
                OutboundMessage(
                    recipient=route.address,
                    subject=rendered.subject,
                    text=rendered.text,
                    idempotency_key=key,
                    markdown=rendered.markdown,
                    html=rendered.html,
                    mentioned_mobiles=message.mentioned_mobiles,
                    voice=rendered.voice,
                    template=message.template,
                    params=message.facts,
                    message_id=f"msg_{_id(event.case_id, message.ref)}",
                    data=message.data if message.data is not None else dict(message.facts),
                )
            )
        except asyncio.CancelledError:
            self._in_flight.pop(key).cancel()
            raise
        except Exception as exc:
            failed = self._in_flight.pop(key)
            failed.set_exception(exc)
            failed.exception()  # retrieved: a racing delivery may or may not be waiting
            raise
        self._sent[key] = result
        self._in_flight.pop(key).set_result(result)
        while len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)
        return result

    def _is_own_unfinished(self, recorded: Document) -> bool:
        return bool(recorded.get("status") == "sending" and recorded.get("owner") == self._owner)

    async def _retry_later(
        self,
        event: NotifyEvent,
        message: PlannedMessage,
        retry: Retry,
        channel: str,
        key: str,
        fresh: bool,
    ) -> None:
        await self._schedule(
            OutreachRetry(
                event_id=_id(key, "retry"),
                case_id=event.case_id,
                event=event.model_dump(mode="json"),
                purpose=message.purpose,
                recipient_kind=message.recipient_kind,
                recipient_id=message.recipient_id,
                route=retry.step.route,
                attempt=retry.step.attempt,
                route_attempt=retry.step.route_attempt,
            ),
            retry.delay_ms,
            retry.expiration_ms,
        )
        if fresh:
            self._metrics.retries.labels(channel).inc()

    async def _channel_failed(
        self,
        event: NotifyEvent,
        message: PlannedMessage,
        route: Route,
        key: str,
        step: Step,
        error: str,
        fallback: str,
        fresh: bool,
    ) -> None:
        if fresh:
            self._metrics.failed.labels(route.channel, message.purpose).inc()
        await self._publish(
            OutreachFailed(
                event_id=_id(key, "failed"),
                case_id=event.case_id,
                source=event.source,
                external_id=event.external_id,
                channel=route.channel,
                purpose=message.purpose,
                recipient_kind=message.recipient_kind,
                recipient_id=message.recipient_id,
                error=error,
                attempts=step.route_attempt,
                fallback=fallback,
            )
        )

    async def _give_up(
        self,
        event: NotifyEvent,
        message: PlannedMessage,
        step: Step,
        route: Route | None,
        error: str,
    ) -> None:
        log.error(
            "case %s: %s to %s could not be delivered (%s); dead-lettered for an operator",
            event.case_id,
            message.purpose,
            message.recipient_kind,
            error,
        )
        if route is None:  # nothing could even be tried: say so once, as a failure of "none"
            self._metrics.failed.labels("none", message.purpose).inc()
            await self._publish(
                OutreachFailed(
                    event_id=_id(event.case_id, message.ref, "no_route"),
                    case_id=event.case_id,
                    source=event.source,
                    external_id=event.external_id,
                    channel="none",
                    purpose=message.purpose,
                    recipient_kind=message.recipient_kind,
                    recipient_id=message.recipient_id,
                    error=error,
                )
            )
        await self._store.dead_letter(
            OutreachDeadLetter(
                _id=f"{event.case_id}:{message.ref}",
                case_id=event.case_id,
                source=event.source,
                external_id=event.external_id,
                purpose=message.purpose,
                recipient_kind=message.recipient_kind,
                recipient_id=message.recipient_id,
                channels=[r.channel for r in message.routes],
                error=error,
                attempts=step.attempt,
                event=event.model_dump(mode="json"),
                failed_at=self._clock(),
            )
        )


INTERRUPTED = "interrupted: the process stopped mid-send; it may or may not have arrived"
# The event a message answers, as matching stored it on the case (`events.<slot>`).
_EVENT_SLOTS: dict[str, type[Event]] = {
    "assignment": CaseAssigned,
    "work_order": CaseAssigned,
    "escalation": CaseEscalated,
    "details": CaseAccepted,
    "arranged": CaseAccepted,
    "status_assigned": CaseAssigned,
    "status_escalated": CaseEscalated,
    "status_accepted": CaseAccepted,
    "status_resolved": CaseResolved,
}


def _event_behind(case: Document, purpose: str) -> dict[str, Any]:
    """The event to replay the message from: stored by matching, or (for the hotline's
    `received` callback) rebuilt from the case's facts."""
    model = _EVENT_SLOTS.get(purpose)
    if model is not None:
        stored: dict[str, Any] = case.get("events", {}).get(model.slot(), {})
        return stored
    if purpose == "status_received" and case.get("facts"):
        return HardshipReported(
            case_id=case["_id"],
            source=case.get("source", ""),
            external_id=case.get("external_id", ""),
            facts=CaseFacts.model_validate(case["facts"]),
        ).model_dump(mode="json")
    return {}
