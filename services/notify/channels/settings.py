from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ChannelSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    wechat_work_enabled: bool = Field(default=True, validation_alias="WECHAT_WORK_ENABLED")
    smtp_host: str | None = Field(default=None, validation_alias="SMTP_HOST")
    smtp_port: int = Field(default=25, validation_alias="SMTP_PORT")
    smtp_username: str | None = Field(default=None, validation_alias="SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, validation_alias="SMTP_PASSWORD")
    smtp_starttls: bool = Field(default=False, validation_alias="SMTP_STARTTLS")
    smtp_use_tls: bool = Field(default=False, validation_alias="SMTP_USE_TLS")
    smtp_from: str = Field(
        default="CareRelay 助残联络 <noreply@carerelay.local>", validation_alias="SMTP_FROM"
    )
    smtp_timeout_s: float = Field(default=10.0, gt=0, validation_alias="SMTP_TIMEOUT_S")
