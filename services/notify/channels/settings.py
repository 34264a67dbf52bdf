from __future__ import annotations

import json
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from .console import ConsoleSettings
from .sms import SmsSettings
from .smtp import SmtpSettings
from .voice import VoiceSettings
from .webhook import WebhookSettings
from .wechat_work import WeChatWorkSettings


class ChannelSettings(
    ConsoleSettings, WeChatWorkSettings, SmtpSettings, SmsSettings, VoiceSettings, WebhookSettings
):
    """Every channel's settings (each adapter module declares its own)."""

    model_config = SettingsConfigDict(extra="ignore")

    channel_rate_limits: dict[str, float] = Field(
        default_factory=lambda: {"sms": 10.0, "voice": 2.0},
        validation_alias="CHANNEL_RATE_LIMITS",
        description='JSON: messages per second per channel and process, e.g. {"sms": 10}',
    )

    @field_validator("channel_rate_limits", mode="before")
    @classmethod
    def _rates_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value
