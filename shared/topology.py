"""The RabbitMQ topology, declared once: publishers and subscribers both import it.

hotline ──report.submitted──▶ [intake.reports]
intake ──hardship.reported──▶ carerelay.events ──▶ [matching.hardship-reported]
helper app ──offer.answer / resolution.submit──▶ [matching.offer-answers / .case-resolutions]
matching ──case.assigned / case.escalated──▶ carerelay.events ──▶ [notify.case-*]
matching ──case.accepted / case.declined / case.resolved──▶ carerelay.events
notify ──outreach.sent / outreach.failed──▶ carerelay.events
every queue ──rejected / over delivery limit──▶ carerelay.dlx ──▶ [<queue>.dlq]

Outreach retries wait in delay queues and come back to notify when their time is up:
notify ──OutreachRetry──▶ carerelay.delay ──▶ [notify.outreach-retry.delay-<ms>ms] (TTL)
      ──expired, dead-lettered──▶ carerelay.delay ──▶ [notify.outreach-retry] ──▶ notify
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aiormq.exceptions
from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import ClassicQueueArgs, QuorumQueueArgs

from shared.contracts import (
    CaseAccepted,
    CaseAssigned,
    CaseEscalated,
    CaseResolved,
    HardshipReported,
    OfferAnswer,
    OutreachRetry,
    RegistryChanged,
    ResolveCase,
)

EVENTS = RabbitExchange("carerelay.events", type=ExchangeType.TOPIC, durable=True)
DEAD_LETTERS = RabbitExchange("carerelay.dlx", type=ExchangeType.DIRECT, durable=True)
# Where retries wait (delay queues) and come back from (the retry work queue); direct, so
# nothing on the events exchange ever sees a retry.
DELAYS = RabbitExchange("carerelay.delay", type=ExchangeType.DIRECT, durable=True)

QueueKind = Literal["quorum", "classic"]


@dataclass(frozen=True)
class Route:
    """A durable work queue bound to one routing key on an exchange (the events exchange
    unless said otherwise)."""

    queue: str
    routing_key: str
    exchange: RabbitExchange = EVENTS

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"


# Hotlines that prefer AMQP publish a HardshipReport body to exchange `carerelay.events`
# with routing key `report.submitted`.
INTAKE_REPORTS = Route("intake.reports", "report.submitted")
MATCHING_REPORTED = Route("matching.hardship-reported", HardshipReported.routing_key)
# Helpers' apps answer offers over AMQP with an OfferAnswer body and routing key `offer.answer`.
MATCHING_ANSWERS = Route("matching.offer-answers", OfferAnswer.routing_key)
# The helper who accepted (or the duty desk) closes a case with a ResolveCase body and routing
# key `resolution.submit`.
MATCHING_RESOLUTIONS = Route("matching.case-resolutions", ResolveCase.routing_key)
NOTIFY_ASSIGNED = Route("notify.case-assigned", CaseAssigned.routing_key)
NOTIFY_ESCALATED = Route("notify.case-escalated", CaseEscalated.routing_key)
NOTIFY_REPORTED = Route("notify.hardship-reported", HardshipReported.routing_key)
NOTIFY_ACCEPTED = Route("notify.case-accepted", CaseAccepted.routing_key)
NOTIFY_RESOLVED = Route("notify.case-resolved", CaseResolved.routing_key)
# Bound to DELAYS, not EVENTS: fed only by the delay queues below and by `carerelay outreach
# replay`.
NOTIFY_RETRY = Route("notify.outreach-retry", OutreachRetry.routing_key, DELAYS)

ALL_ROUTES = (
    INTAKE_REPORTS,
    MATCHING_REPORTED,
    MATCHING_ANSWERS,
    MATCHING_RESOLUTIONS,
    NOTIFY_ASSIGNED,
    NOTIFY_ESCALATED,
    NOTIFY_REPORTED,
    NOTIFY_ACCEPTED,
    NOTIFY_RESOLVED,
    NOTIFY_RETRY,
)
NOTIFY_EVENT_ROUTES = (
    NOTIFY_REPORTED,
    NOTIFY_ASSIGNED,
    NOTIFY_ESCALATED,
    NOTIFY_ACCEPTED,
    NOTIFY_RESOLVED,
)
REGISTRY_CHANGED_KEY = RegistryChanged.routing_key


@dataclass(frozen=True)
class QueueOptions:
    """How work queues are declared; every service must declare them alike (from settings)."""

    kind: QueueKind = "quorum"
    delivery_limit: int = 5
    max_length: int = 100_000


def work_queue(route: Route, options: QueueOptions = QueueOptions()) -> RabbitQueue:
    """The queue a consuming service subscribes to. Failures dead-letter to `<queue>.dlq`; when
    it is full the broker refuses publishes (the publisher sees a nack), so overload becomes
    an answer at intake instead of memory growth."""
    if options.kind == "quorum":
        quorum: QuorumQueueArgs = {
            "x-dead-letter-exchange": DEAD_LETTERS.name,
            "x-dead-letter-routing-key": route.queue,
            "x-delivery-limit": options.delivery_limit,
            "x-max-length": options.max_length,
            "x-overflow": "reject-publish",
        }
        return RabbitQueue(
            route.queue, QueueType.QUORUM, arguments=quorum, routing_key=route.routing_key
        )
    classic: ClassicQueueArgs = {
        "x-dead-letter-exchange": DEAD_LETTERS.name,
        "x-dead-letter-routing-key": route.queue,
        "x-max-length": options.max_length,
        "x-overflow": "reject-publish",
    }
    return RabbitQueue(route.queue, arguments=classic, routing_key=route.routing_key)


def dead_letter_queue(route: Route) -> RabbitQueue:
    return RabbitQueue(route.dead_letter_queue, durable=True, routing_key=route.queue)


def registry_queue(replica: str, service: str = "matching") -> RabbitQueue:
    """Each replica gets its own short-lived queue so every replica sees every change."""
    return RabbitQueue(
        f"{service}.registry.{replica}",
        durable=False,
        exclusive=True,
        auto_delete=True,
        routing_key=REGISTRY_CHANGED_KEY,
    )


class TopologyMismatch(RuntimeError):
    pass


async def declare_topology(broker: RabbitBroker, options: QueueOptions) -> None:
    """Declare every exchange, work queue, binding and dead-letter queue. Every service does this
    at start, so an event is never published before the queue that must receive it exists."""
    exchanges = {e.name: await broker.declare_exchange(e) for e in (EVENTS, DELAYS)}
    dead_letters = await broker.declare_exchange(DEAD_LETTERS)
    for route in ALL_ROUTES:
        try:
            queue = await broker.declare_queue(work_queue(route, options))
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise TopologyMismatch(
                f"queue {route.queue} exists with other arguments than {options} ({exc}); "
                "an older CareRelay or another setting declared it: drain it and delete it "
                f"(rabbitmqctl delete_queue {route.queue}), or match the settings"
            ) from exc
        await queue.bind(exchanges[route.exchange.name], routing_key=route.routing_key)
        dead = await broker.declare_queue(dead_letter_queue(route))
        await dead.bind(dead_letters, routing_key=route.queue)


def retry_delays_ms(base_s: float, max_attempts: int, cap_s: float = 3600.0) -> tuple[int, ...]:
    """The delay before each retry (exponential: base, 2*base, 4*base ...), one queue each."""
    return tuple(
        int(min(cap_s, base_s * 2**step) * 1000) for step in range(max(0, max_attempts - 1))
    )


def retry_delay_queue(delay_ms: int, kind: QueueKind = "quorum") -> RabbitQueue:
    """A queue nobody consumes: messages wait out its TTL (or their own, shorter, expiration:
    the jitter) and are dead-lettered back to the retry work queue. The delay is in the name,
    so changing the backoff declares new queues instead of clashing with the old ones."""
    name = f"{NOTIFY_RETRY.queue}.delay-{delay_ms}ms"
    back = {
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": DELAYS.name,
        "x-dead-letter-routing-key": NOTIFY_RETRY.routing_key,
    }
    if kind == "quorum":
        quorum: QuorumQueueArgs = {
            **back,  # type: ignore[typeddict-item]
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        return RabbitQueue(name, QueueType.QUORUM, arguments=quorum, routing_key=name)
    classic: ClassicQueueArgs = back  # type: ignore[assignment]
    return RabbitQueue(name, arguments=classic, routing_key=name)


async def declare_retry_queues(
    broker: RabbitBroker, delays_ms: tuple[int, ...], kind: QueueKind = "quorum"
) -> None:
    """Declare the delay exchange and one delay queue per backoff step."""
    exchange = await broker.declare_exchange(DELAYS)
    for delay in delays_ms:
        queue = await broker.declare_queue(retry_delay_queue(delay, kind))
        await queue.bind(exchange, routing_key=queue.name)
