from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, ClassVar

import aiosmtplib
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import ChannelInfo, OutboundMessage, SendResult


class SmtpSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    smtp_host: str | None = Field(default=None, validation_alias="SMTP_HOST")
    smtp_port: int = Field(default=25, validation_alias="SMTP_PORT")
    smtp_username: str | None = Field(default=None, validation_alias="SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, validation_alias="SMTP_PASSWORD")
    smtp_starttls: bool = Field(default=False, validation_alias="SMTP_STARTTLS")
    smtp_use_tls: bool = Field(default=False, validation_alias="SMTP_USE_TLS")
    smtp_ca_file: str | None = Field(
        default=None,
        validation_alias="SMTP_CA_FILE",
        description="CA bundle that signed the server's certificate (a private CA)",
    )
    smtp_from: str = Field(
        default="CareRelay 助残联络 <noreply@carerelay.local>", validation_alias="SMTP_FROM"
    )
    smtp_timeout_s: float = Field(default=10.0, gt=0, validation_alias="SMTP_TIMEOUT_S")


class EmailChannel:
    """Email over SMTP (optionally STARTTLS or implicit TLS): plain text, and HTML when given."""

    name = "email"
    info: ClassVar[ChannelInfo] = ChannelInfo(name, reaches="email")

    def __init__(self, settings: SmtpSettings) -> None:
        assert settings.smtp_host is not None
        self._settings = settings
        self._host = settings.smtp_host

    @classmethod
    def from_settings(cls, settings: Any) -> EmailChannel | None:
        return cls(settings) if settings.smtp_host else None

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
                cert_bundle=s.smtp_ca_file,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            return SendResult(ok=False, error=f"smtp_{exc.code}", retryable=exc.code < 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return SendResult(ok=False, error=type(exc).__name__, retryable=True)
        return SendResult(ok=True, provider_id=f"email:{message.idempotency_key}")

    async def aclose(self) -> None:
        return None
