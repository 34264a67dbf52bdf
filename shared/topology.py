"""The RabbitMQ topology, declared once: publishers and subscribers both import it.

hotline ──report.submitted──▶ [intake.reports]
intake ──hardship.reported──▶ carerelay.events ──▶ [matching.hardship-reported]
matching ──case.assigned / case.escalated──▶ carerelay.events ──▶ [notify.case-*]
notify ──outreach.sent / outreach.failed──▶ carerelay.events
every queue ──rejected / over delivery limit──▶ carerelay.dlx ──▶ [<queue>.dlq]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aiormq.exceptions
from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import ClassicQueueArgs, QuorumQueueArgs

from shared.contracts import (
    CaseAssigned,
    CaseEscalated,
    HardshipReported,
    OfferAnswer,
    RegistryChanged,
)

EVENTS = RabbitExchange("carerelay.events", type=ExchangeType.TOPIC, durable=True)
DEAD_LETTERS = RabbitExchange("carerelay.dlx", type=ExchangeType.DIRECT, durable=True)

QueueKind = Literal["quorum", "classic"]


@dataclass(frozen=True)
class Route:
    """A durable work queue bound to one routing key on the events exchange."""

    queue: str
    routing_key: str

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"


# Hotlines that prefer AMQP publish a HardshipReport body to exchange `carerelay.events`
# with routing key `report.submitted`.
INTAKE_REPORTS = Route("intake.reports", "report.submitted")
MATCHING_REPORTED = Route("matching.hardship-reported", HardshipReported.routing_key)
# Helpers' apps answer offers over AMQP with an OfferAnswer body and routing key `offer.answer`.
MATCHING_ANSWERS = Route("matching.offer-answers", OfferAnswer.routing_key)
NOTIFY_ASSIGNED = Route("notify.case-assigned", CaseAssigned.routing_key)
NOTIFY_ESCALATED = Route("notify.case-escalated", CaseEscalated.routing_key)

ALL_ROUTES = (
    INTAKE_REPORTS,
    MATCHING_REPORTED,
    MATCHING_ANSWERS,
    NOTIFY_ASSIGNED,
    NOTIFY_ESCALATED,
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


def registry_queue(replica: str) -> RabbitQueue:
    """Each matching replica gets its own short-lived queue so every replica sees every change."""
    return RabbitQueue(
        f"matching.registry.{replica}",
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
    events = await broker.declare_exchange(EVENTS)
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
        await queue.bind(events, routing_key=route.routing_key)
        dead = await broker.declare_queue(dead_letter_queue(route))
        await dead.bind(dead_letters, routing_key=route.queue)
