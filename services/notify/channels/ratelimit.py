from __future__ import annotations

from aiolimiter import AsyncLimiter

from .base import Channel, ChannelInfo, OutboundMessage, SendResult


class RateLimited:
    """A channel behind a leaky-bucket limiter (aiolimiter). The bucket is per process: with N
    replicas the provider sees up to N times the rate, so set the rate per replica."""

    def __init__(self, channel: Channel, per_second: float) -> None:
        self._channel = channel
        self.name = channel.name
        self.info: ChannelInfo = channel.info
        # capacity of one second's worth (at least one message), refilled continuously
        self._limiter = (
            AsyncLimiter(max(1.0, per_second), 1.0)
            if per_second >= 1
            else (AsyncLimiter(1, 1.0 / per_second))
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        async with self._limiter:
            return await self._channel.send(message)

    async def aclose(self) -> None:
        await self._channel.aclose()
