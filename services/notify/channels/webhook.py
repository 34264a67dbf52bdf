"""JSON webhooks signed per Standard Webhooks: hotline status callbacks (one URL and secret per
reporting source) and work orders to an agency's own system."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts import HotlineStatusCallback

from .base import ChannelInfo, OutboundMessage, SendResult, post
from .signing import webhook_headers, webhook_key


class HotlineEndpoint(BaseModel):
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        webhook_key(value.get_secret_value())
        return value


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    hotline_callbacks: dict[str, HotlineEndpoint] = Field(
        default_factory=dict,
        validation_alias="HOTLINE_CALLBACKS",
        description='JSON: {"<source>": {"url": "...", "secret": "whsec_..."}}',
    )
    hotline_callbacks_file: Path | None = Field(
        default=None,
        validation_alias="HOTLINE_CALLBACKS_FILE",
        description="TOML: one [<source>] table with url and secret each",
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, validation_alias="WEBHOOK_TIMEOUT_S")
    work_order_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="WORK_ORDER_WEBHOOK_SECRET"
    )

    @field_validator("hotline_callbacks", mode="before")
    @classmethod
    def _callbacks_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def hotline_endpoints(self) -> dict[str, HotlineEndpoint]:
        """Sources from the file, then from the environment (which wins)."""
        endpoints: dict[str, HotlineEndpoint] = {}
        if self.hotline_callbacks_file is not None:
            raw = tomllib.loads(self.hotline_callbacks_file.read_text(encoding="utf-8"))
            endpoints.update(
                {source: HotlineEndpoint.model_validate(entry) for source, entry in raw.items()}
            )
        return endpoints | self.hotline_callbacks


async def _post_signed(
    client: httpx.AsyncClient, url: str, secret: str, msg_id: str, body: bytes, now: int
) -> SendResult:
    headers = webhook_headers(secret, msg_id, now, body)
    response = await post(client, url, fail_from=300, content=body, headers=headers)
    if isinstance(response, SendResult):
        return response
    return SendResult(ok=True, provider_id=f"webhook:{msg_id}")


class HotlineCallbackChannel:
    """Status callbacks to the hotline that reported the case; the recipient is its source."""

    name = "hotline"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="hotline")

    def __init__(
        self,
        endpoints: Mapping[str, HotlineEndpoint],
        timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = frozenset(endpoints)
        self._endpoints = dict(endpoints)
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Any) -> HotlineCallbackChannel | None:
        endpoints = settings.hotline_endpoints()
        return cls(endpoints, settings.webhook_timeout_s) if endpoints else None

    @staticmethod
    def body(message: OutboundMessage) -> bytes:
        data = {**(message.data or {}), "summary": message.text.strip()}
        callback = HotlineStatusCallback(timestamp=data["occurred_at"], data=data)
        return callback.model_dump_json().encode()

    async def send(self, message: OutboundMessage) -> SendResult:
        endpoint = self._endpoints.get(message.recipient)
        if endpoint is None:
            return SendResult(ok=False, error="no_callback_configured", retryable=False)
        return await _post_signed(
            self._client,
            endpoint.url,
            endpoint.secret.get_secret_value(),
            message.message_id,
            self.body(message),
            int(self._clock()),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class WorkOrderWebhookChannel:
    """A work order POSTed to an agency's own system (its `contact.webhook`), signed with
    `WORK_ORDER_WEBHOOK_SECRET`."""

    name = "webhook"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="webhook")

    def __init__(
        self, secret: str, timeout: float = 5.0, client: httpx.AsyncClient | None = None
    ) -> None:
        webhook_key(secret)
        self._secret = secret
        self._client = client or httpx.AsyncClient(timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Any) -> WorkOrderWebhookChannel | None:
        secret = settings.work_order_webhook_secret
        return cls(secret.get_secret_value(), settings.webhook_timeout_s) if secret else None

    @staticmethod
    def body(message: OutboundMessage, now: datetime) -> bytes:
        body = {
            "type": f"carerelay.{message.template}",
            "timestamp": now.isoformat(),
            "data": {"subject": message.subject, "text": message.text, **(message.data or {})},
        }
        return json.dumps(body, ensure_ascii=False).encode()

    async def send(self, message: OutboundMessage) -> SendResult:
        now = datetime.now(UTC)
        return await _post_signed(
            self._client,
            message.recipient,
            self._secret,
            message.message_id,
            self.body(message, now),
            int(now.timestamp()),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
