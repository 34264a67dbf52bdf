"""The channel adapters, built from settings. Adding a channel: write its adapter class (with
its settings), list it here, add its templates. Planning picks channels by what they reach."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Adapter, Channel
from .console import ConsoleChannel
from .ratelimit import RateLimited
from .settings import ChannelSettings
from .sms import GenericSmsChannel, TencentSmsChannel
from .smtp import EmailChannel
from .voice import VoiceChannel
from .webhook import HotlineCallbackChannel, WorkOrderWebhookChannel
from .wechat_work import WeChatWorkChannel

ADAPTERS: Sequence[type[Adapter]] = (
    WeChatWorkChannel,
    EmailChannel,
    GenericSmsChannel,
    TencentSmsChannel,
    VoiceChannel,
    WorkOrderWebhookChannel,
    HotlineCallbackChannel,
    ConsoleChannel,
)


def build_channels(
    settings: ChannelSettings, adapters: Sequence[type[Adapter]] = ADAPTERS
) -> dict[str, Channel]:
    """The configured channels by name (the first configured adapter of a name wins)."""
    channels: dict[str, Channel] = {}
    for adapter in adapters:
        if adapter.info.name in channels:
            continue
        channel = adapter.from_settings(settings)
        if channel is None:
            continue
        rate = settings.channel_rate_limits.get(channel.name)
        channels[channel.name] = RateLimited(channel, rate) if rate else channel
    return channels
