"""The one interface every outreach channel implements. A new channel is one class and a
template; handlers never change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutboundMessage:
    recipient: str  # the address on this channel: webhook URL, email address, phone number
    subject: str
    text: str
    idempotency_key: str  # stable per case + recipient + purpose + attempt
    markdown: str | None = None
    html: str | None = None
    mentioned_mobiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class SendResult:
    ok: bool
    provider_id: str | None = None
    error: str | None = None  # short, and never personal data
    retryable: bool = True


class Channel(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


def truncate_utf8(text: str, limit: int) -> str:
    """Cut text to at most `limit` UTF-8 bytes, on a character boundary, marking the cut."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    ellipsis = "…"
    room = limit - len(ellipsis.encode())
    return encoded[:room].decode(errors="ignore") + ellipsis
