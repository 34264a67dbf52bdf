"""Dead letters: what an operator sees of them, and putting them back to work.

Listing never prints a message body (a hotline report holds personal data): only where it was
going, why it died, how often, and its size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from shared.topology import ALL_ROUTES, EVENTS


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    routing_key: str
    reason: str
    deaths: int
    died_at: datetime | None
    size: int


def _death(message: AbstractIncomingMessage) -> dict[str, Any]:
    deaths = (message.headers or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def describe(queue: str, message: AbstractIncomingMessage) -> DeadLetter:
    death = _death(message)
    routing_keys = death.get("routing-keys") or [message.routing_key or ""]
    return DeadLetter(
        queue=queue,
        message_id=message.message_id or "",
        routing_key=str(routing_keys[0]),
        reason=str(death.get("reason", "unknown")),
        deaths=int(death.get("count", 1)),
        died_at=death.get("time"),
        size=len(message.body),
    )


async def list_dead_letters(channel: AbstractChannel, limit: int = 100) -> list[DeadLetter]:
    """Peek at every dead-letter queue; the messages stay where they are."""
    found: list[DeadLetter] = []
    for route in ALL_ROUTES:
        queue = await channel.declare_queue(route.dead_letter_queue, passive=True)
        held: list[AbstractIncomingMessage] = []
        while len(found) < limit and (message := await queue.get(no_ack=False, fail=False)):
            held.append(message)
            found.append(describe(route.dead_letter_queue, message))
        for message in held:
            await message.nack(requeue=True)
    return found


async def replay(
    channel: AbstractChannel, dead_letter_queue: str, message_id: str | None = None
) -> int:
    """Publish dead letters back to where they were going (all, or the one with `message_id`)
    and remove them from the dead-letter queue once the broker confirms."""
    queue = await channel.declare_queue(dead_letter_queue, passive=True)
    exchange = await channel.get_exchange(EVENTS.name)
    replayed = 0
    skipped: list[AbstractIncomingMessage] = []
    while message := await queue.get(no_ack=False, fail=False):
        if message_id is not None and message.message_id != message_id:
            skipped.append(message)
            continue
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
        await exchange.publish(
            aio_pika.Message(
                message.body,
                headers=headers,
                content_type=message.content_type,
                message_id=message.message_id,
                type=message.type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=describe(dead_letter_queue, message).routing_key,
        )
        await message.ack()
        replayed += 1
    for message in skipped:
        await message.nack(requeue=True)
    return replayed
