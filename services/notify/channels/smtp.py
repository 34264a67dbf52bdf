from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from .base import OutboundMessage, SendResult
from .settings import ChannelSettings


class EmailChannel:
    """Email over SMTP (optionally STARTTLS or implicit TLS): plain text, and HTML when given."""

    name = "email"

    def __init__(self, settings: ChannelSettings) -> None:
        assert settings.smtp_host is not None
        self._settings = settings
        self._host = settings.smtp_host

    def compose(self, message: OutboundMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self._settings.smtp_from
        email["To"] = message.recipient
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = f"<{message.idempotency_key.replace(':', '.')}@carerelay>"
        email["X-CareRelay-Key"] = message.idempotency_key
        email.set_content(message.text, charset="utf-8")
        if message.html is not None:
            email.add_alternative(message.html, subtype="html", charset="utf-8")
        return email

    async def send(self, message: OutboundMessage) -> SendResult:
        s = self._settings
        try:
            await aiosmtplib.send(
                self.compose(message),
                hostname=self._host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls,
                use_tls=s.smtp_use_tls,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            return SendResult(ok=False, error=f"smtp_{exc.code}", retryable=exc.code < 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return SendResult(ok=False, error=type(exc).__name__, retryable=True)
        return SendResult(ok=True, provider_id=f"email:{message.idempotency_key}")

    async def aclose(self) -> None:
        return None
