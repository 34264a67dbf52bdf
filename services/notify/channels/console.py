from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.pii import scrub_digits

from .base import ChannelInfo, OutboundMessage, SendResult

log = logging.getLogger("carerelay.notify.console")


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    console_enabled: bool | None = Field(
        default=None,
        validation_alias="CONSOLE_CHANNEL_ENABLED",
        description="Log messages as the last fallback; default on except in production, where "
        "a message nobody received must be dead-lettered, not logged as sent",
    )


class ConsoleChannel:
    """Prints messages to the log (development); phone-like numbers masked. Not private: a log
    is no place for a person's name or address, so messages carrying them never come here."""

    name = "console"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="log", private=False)

    @classmethod
    def from_settings(cls, settings: Any) -> ConsoleChannel | None:
        enabled = settings.console_enabled
        if enabled is None:
            enabled = getattr(settings, "environment", "development") != "production"
        return cls() if enabled else None

    async def send(self, message: OutboundMessage) -> SendResult:
        log.info("%s | %s", scrub_digits(message.subject), scrub_digits(message.text))
        return SendResult(ok=True, provider_id=f"console:{message.idempotency_key}")

    async def aclose(self) -> None:
        return None
