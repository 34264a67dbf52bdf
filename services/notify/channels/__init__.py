"""Outreach channels behind one interface (see base.Channel)."""

from __future__ import annotations

from .base import Channel, OutboundMessage, SendResult
from .console import ConsoleChannel
from .settings import ChannelSettings
from .smtp import EmailChannel
from .wechat_work import WeChatWorkChannel

__all__ = [
    "Channel",
    "ChannelSettings",
    "ConsoleChannel",
    "EmailChannel",
    "OutboundMessage",
    "SendResult",
    "WeChatWorkChannel",
    "build_channels",
]


def build_channels(settings: ChannelSettings) -> dict[str, Channel]:
    """The configured channels by name; the console is always there."""
    channels: dict[str, Channel] = {"console": ConsoleChannel()}
    if settings.wechat_work_enabled:
        channels["wechat_work"] = WeChatWorkChannel()
    if settings.smtp_host:
        channels["email"] = EmailChannel(settings)
    return channels
