from __future__ import annotations

import httpx

from .base import OutboundMessage, SendResult, truncate_utf8

TEXT_LIMIT = 2048  # bytes, WeChat Work group-robot text messages
MARKDOWN_LIMIT = 4096
RATE_LIMITED = 45009
PERMANENT = {93000, 40008, 40058, 44004}  # invalid webhook key, bad type, bad body, empty text


class WeChatWorkChannel:
    """WeChat Work (企业微信) group-robot webhook; the recipient is the webhook URL."""

    name = "wechat_work"

    def __init__(self, client: httpx.AsyncClient | None = None, timeout: float = 5.0) -> None:
        self._client = client or httpx.AsyncClient(timeout=timeout)

    @staticmethod
    def body(message: OutboundMessage) -> dict[str, object]:
        if message.markdown is not None:
            return {
                "msgtype": "markdown",
                "markdown": {"content": truncate_utf8(message.markdown, MARKDOWN_LIMIT)},
            }
        text: dict[str, object] = {"content": truncate_utf8(message.text, TEXT_LIMIT)}
        if message.mentioned_mobiles:
            text["mentioned_mobile_list"] = list(message.mentioned_mobiles)
        return {"msgtype": "text", "text": text}

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            response = await self._client.post(message.recipient, json=self.body(message))
        except httpx.HTTPError as exc:
            return SendResult(ok=False, error=type(exc).__name__, retryable=True)
        if response.status_code >= 400:
            status = response.status_code
            return SendResult(ok=False, error=f"http_{status}", retryable=status >= 500)
        try:
            errcode = int(response.json().get("errcode", -1))
        except ValueError:
            return SendResult(ok=False, error="unreadable_answer", retryable=True)
        if errcode == 0:
            return SendResult(ok=True, provider_id=f"wechat_work:{message.idempotency_key}")
        return SendResult(ok=False, error=f"errcode_{errcode}", retryable=errcode not in PERMANENT)

    async def aclose(self) -> None:
        await self._client.aclose()
