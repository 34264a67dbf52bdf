"""The one interface every outreach channel implements. A new channel is one adapter class
(registered in `registry.ADAPTERS`) and its templates; planning and handlers never change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import httpx
from pydantic import SecretStr

# What a channel reaches: planning picks channels by this, never by name.
Reaches = Literal["phone", "email", "group", "webhook", "hotline", "log"]
Medium = Literal["text", "voice"]


@dataclass(frozen=True)
class ChannelInfo:
    """What planning needs to know about a configured channel."""

    name: str
    reaches: Reaches
    medium: Medium = "text"
    private: bool = True  # False for group chats: never used for messages with personal data


@dataclass(frozen=True)
class OutboundMessage:
    recipient: str  # the address on this channel: webhook URL, email address, phone number
    subject: str
    text: str
    idempotency_key: str  # stable per case + recipient + purpose + attempt
    markdown: str | None = None
    html: str | None = None
    mentioned_mobiles: tuple[str, ...] = ()
    voice: str | None = None  # a short text-to-speech script
    template: str = ""  # our template name; SMS providers map it to their approved template id
    params: Mapping[str, str] = field(default_factory=dict)  # the facts the template was given
    message_id: str = ""  # stable across attempts of one message (webhook-id, dedupe by receiver)
    data: Mapping[str, Any] | None = None  # structured body for webhook channels


@dataclass(frozen=True)
class SendResult:
    ok: bool
    provider_id: str | None = None
    error: str | None = None  # short, and never personal data
    retryable: bool = True


class Channel(Protocol):
    name: str

    @property
    def info(self) -> ChannelInfo: ...

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


class Adapter(Protocol):
    """A channel class: builds itself from settings, or returns None when not configured."""

    info: ClassVar[ChannelInfo]

    @classmethod
    def from_settings(cls, settings: Any) -> Channel | None: ...


def truncate_utf8(text: str, limit: int) -> str:
    """Cut text to at most `limit` UTF-8 bytes, on a character boundary, marking the cut."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    ellipsis = "…"
    room = limit - len(ellipsis.encode())
    return encoded[:room].decode(errors="ignore") + ellipsis


def http_failure(status: int) -> SendResult:
    """An HTTP error answer: 408, 429 and 5xx are worth retrying, other 4xx are not."""
    return SendResult(
        ok=False, error=f"http_{status}", retryable=status >= 500 or status in (408, 429)
    )


async def post(
    client: httpx.AsyncClient, url: str, *, fail_from: int = 400, **request: Any
) -> httpx.Response | SendResult:
    """POST once: a transport error (retryable) or an error answer comes back as the failed
    SendResult; anything else is the response for the channel to read."""
    try:
        response = await client.post(url, **request)
    except httpx.HTTPError as exc:
        return SendResult(ok=False, error=type(exc).__name__, retryable=True)
    if response.status_code >= fail_from:
        return http_failure(response.status_code)
    return response


def gateway_headers(idempotency_key: str, token: SecretStr | None) -> dict[str, str]:
    """What an HTTP gateway of ours is sent: the idempotency key, and its bearer token if set."""
    headers = {"Idempotency-Key": idempotency_key}
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    return headers
