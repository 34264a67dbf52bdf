from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import ChannelInfo, OutboundMessage, SendResult, post, truncate_utf8

TEXT_LIMIT = 2048  # bytes, WeChat Work group-robot text messages
MARKDOWN_LIMIT = 4096
PERMANENT = {93000, 40008, 40058, 44004}  # invalid webhook key, bad type, bad body, empty text


class WeChatWorkSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    wechat_work_enabled: bool = Field(default=True, validation_alias="WECHAT_WORK_ENABLED")
    wechat_work_timeout_s: float = Field(
        default=5.0, gt=0, validation_alias="WECHAT_WORK_TIMEOUT_S"
    )


class WeChatWorkChannel:
    """WeChat Work (企业微信) group-robot webhook; the recipient is the webhook URL. A group is
    not private, so planning never sends personal data this way."""

    name = "wechat_work"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="group", private=False)

    def __init__(self, client: httpx.AsyncClient | None = None, timeout: float = 5.0) -> None:
        self._client = client or httpx.AsyncClient(timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Any) -> WeChatWorkChannel | None:
        if not settings.wechat_work_enabled:
            return None
        return cls(timeout=settings.wechat_work_timeout_s)

    @staticmethod
    def body(message: OutboundMessage) -> dict[str, object]:
        """Text when someone is to be @-mentioned (markdown cannot mention by mobile), else the
        markdown version when the template has one."""
        if message.markdown is not None and not message.mentioned_mobiles:
            return {
                "msgtype": "markdown",
                "markdown": {"content": truncate_utf8(message.markdown, MARKDOWN_LIMIT)},
            }
        text: dict[str, object] = {"content": truncate_utf8(message.text, TEXT_LIMIT)}
        if message.mentioned_mobiles:
            text["mentioned_mobile_list"] = list(message.mentioned_mobiles)
        return {"msgtype": "text", "text": text}

    async def send(self, message: OutboundMessage) -> SendResult:
        response = await post(self._client, message.recipient, json=self.body(message))
        if isinstance(response, SendResult):
            return response
        try:
            errcode = int(response.json().get("errcode", -1))
        except ValueError:
            return SendResult(ok=False, error="unreadable_answer", retryable=True)
        if errcode == 0:
            return SendResult(ok=True, provider_id=f"wechat_work:{message.idempotency_key}")
        return SendResult(ok=False, error=f"errcode_{errcode}", retryable=errcode not in PERMANENT)

    async def aclose(self) -> None:
        await self._client.aclose()
