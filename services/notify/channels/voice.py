from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import ChannelInfo, OutboundMessage, SendResult, gateway_headers, post
from .sms import e164


class VoiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    call_centre_url: str | None = Field(default=None, validation_alias="CALL_CENTRE_URL")
    call_centre_token: SecretStr | None = Field(default=None, validation_alias="CALL_CENTRE_TOKEN")
    call_centre_caller_id: str = Field(default="", validation_alias="CALL_CENTRE_CALLER_ID")
    call_centre_repeat: int = Field(default=2, ge=1, le=5, validation_alias="CALL_CENTRE_REPEAT")
    call_centre_timeout_s: float = Field(
        default=5.0, gt=0, validation_alias="CALL_CENTRE_TIMEOUT_S"
    )


class VoiceChannel:
    """A call task handed to a call-centre system over HTTP: it dials the number and reads a
    short text-to-speech script (for blind people the first channel). Body: `{task_id, callee,
    caller_id, script, repeat, language}`; the call centre answers 2xx with `{"task_id": ...}`."""

    name = "voice"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="phone", medium="voice")

    def __init__(
        self,
        settings: VoiceSettings,
        language: str = "zh-CN",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        assert settings.call_centre_url is not None
        self._settings = settings
        self._url = settings.call_centre_url
        self._language = language
        self._client = client or httpx.AsyncClient(timeout=settings.call_centre_timeout_s)

    @classmethod
    def from_settings(cls, settings: Any) -> VoiceChannel | None:
        if not settings.call_centre_url:
            return None
        return cls(settings, getattr(settings, "locale", "zh-CN"))

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        return {
            "task_id": message.idempotency_key,
            "callee": e164(message.recipient),
            "caller_id": self._settings.call_centre_caller_id,
            "script": message.voice or message.text,
            "repeat": self._settings.call_centre_repeat,
            "language": self._language,
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        headers = gateway_headers(message.idempotency_key, self._settings.call_centre_token)
        response = await post(self._client, self._url, json=self.body(message), headers=headers)
        if isinstance(response, SendResult):
            return response
        try:
            task_id = str(response.json().get("task_id") or message.idempotency_key)
        except ValueError:
            task_id = message.idempotency_key
        return SendResult(ok=True, provider_id=f"voice:{task_id}")

    async def aclose(self) -> None:
        await self._client.aclose()
