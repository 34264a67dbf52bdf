"""The RabbitMQ topology, declared once: publishers and subscribers both import it.

hotline ──report.submitted──▶ [intake.reports]
intake ──hardship.reported──▶ carerelay.events ──▶ [matching.hardship-reported]
helper app ──offer.answer / resolution.submit──▶ [matching.offer-answers / .case-resolutions]
matching ──case.assigned / case.escalated──▶ carerelay.events ──▶ [notify.case-*]
matching ──case.accepted / case.declined / case.resolved──▶ carerelay.events
notify ──outreach.sent / outreach.failed──▶ carerelay.events
every queue ──rejected / over delivery limit──▶ carerelay.dlx ──▶ [<queue>.dlq]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import ClassicQueueArgs, QuorumQueueArgs

from shared.contracts import (
    CaseAssigned,
    CaseEscalated,
    HardshipReported,
    OfferAnswer,
    RegistryChanged,
    ResolveCase,
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
# The helper who accepted (or the duty desk) closes a case with a ResolveCase body and routing
# key `resolution.submit`.
MATCHING_RESOLUTIONS = Route("matching.case-resolutions", ResolveCase.routing_key)
NOTIFY_ASSIGNED = Route("notify.case-assigned", CaseAssigned.routing_key)
NOTIFY_ESCALATED = Route("notify.case-escalated", CaseEscalated.routing_key)

ALL_ROUTES = (
    INTAKE_REPORTS,
    MATCHING_REPORTED,
    MATCHING_ANSWERS,
    MATCHING_RESOLUTIONS,
    NOTIFY_ASSIGNED,
    NOTIFY_ESCALATED,
)
REGISTRY_CHANGED_KEY = RegistryChanged.routing_key


def work_queue(route: Route, kind: QueueKind = "quorum", delivery_limit: int = 5) -> RabbitQueue:
    """The queue a consuming service subscribes to; failures dead-letter to `<queue>.dlq`."""
    if kind == "quorum":
        quorum: QuorumQueueArgs = {
            "x-dead-letter-exchange": DEAD_LETTERS.name,
            "x-dead-letter-routing-key": route.queue,
            "x-delivery-limit": delivery_limit,
        }
        return RabbitQueue(
            route.queue, QueueType.QUORUM, arguments=quorum, routing_key=route.routing_key
        )
    classic: ClassicQueueArgs = {
        "x-dead-letter-exchange": DEAD_LETTERS.name,
        "x-dead-letter-routing-key": route.queue,
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


async def declare_dead_letters(broker: RabbitBroker, *routes: Route) -> None:
    """Declare the dead-letter exchange and one dead-letter queue per work queue."""
    exchange = await broker.declare_exchange(DEAD_LETTERS)
    for route in routes:
        queue = await broker.declare_queue(dead_letter_queue(route))
        await queue.bind(exchange, routing_key=route.queue)
