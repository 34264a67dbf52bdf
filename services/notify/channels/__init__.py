"""Outreach channels behind one interface (see base.Channel), built by registry.build_channels."""

from __future__ import annotations

from .base import Channel, ChannelInfo, OutboundMessage, SendResult
from .registry import ADAPTERS, build_channels
from .settings import ChannelSettings

__all__ = [
    "ADAPTERS",
    "Channel",
    "ChannelInfo",
    "ChannelSettings",
    "OutboundMessage",
    "SendResult",
    "build_channels",
]
