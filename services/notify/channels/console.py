from __future__ import annotations

import logging

from shared.pii import scrub_digits

from .base import OutboundMessage, SendResult

log = logging.getLogger("carerelay.notify.console")


class ConsoleChannel:
    """Prints messages to the log (development); phone-like numbers masked."""

    name = "console"

    async def send(self, message: OutboundMessage) -> SendResult:
        log.info("%s | %s", scrub_digits(message.subject), scrub_digits(message.text))
        return SendResult(ok=True, provider_id=f"console:{message.idempotency_key}")

    async def aclose(self) -> None:
        return None
