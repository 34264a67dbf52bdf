"""Settings every service reads from the environment (pydantic-settings)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.embedded import EMBEDDED_URL_OPTIONS
from shared.topology import QueueKind, QueueOptions

DEV_SECRET = "development-only-not-a-secret"  # noqa: S105 - the marker refused outside development
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
EMBEDDED_MONGO_PORT = 27027
DEFAULT_MONGO_URL = f"mongodb://127.0.0.1:{EMBEDDED_MONGO_PORT}/?{EMBEDDED_URL_OPTIONS}"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        default="development", validation_alias="CARERELAY_ENV"
    )
    amqp_url: str = Field(default=DEFAULT_AMQP_URL, validation_alias="AMQP_URL")
    mongo_url: str = Field(default=DEFAULT_MONGO_URL, validation_alias="MONGO_URL")
    mongo_db: str = Field(default="carerelay", validation_alias="MONGO_DB")
    queue_type: QueueKind = Field(default="quorum", validation_alias="QUEUE_TYPE")
    delivery_limit: int = Field(default=5, ge=1, validation_alias="DELIVERY_LIMIT")
    prefetch: int = Field(default=32, ge=1, le=1000, validation_alias="PREFETCH")
    queue_max_length: int = Field(
        default=100_000,
        ge=1,
        validation_alias="QUEUE_MAX_LENGTH",
        description="Messages a work queue holds before the broker refuses publishes to it",
    )
    transient_retry_s: float = Field(
        default=120.0,
        ge=0,
        validation_alias="TRANSIENT_RETRY_S",
        description="How long a handler keeps retrying while the database or broker is down",
    )
    count_commands: bool = Field(
        default=False,
        validation_alias="BENCH_COUNT_COMMANDS",
        description="Count database commands on /metrics (carerelay_db_commands_total)",
    )
    host: str = Field(default="127.0.0.1", validation_alias="BIND_HOST")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    person_key_secret: SecretStr = Field(
        default=SecretStr(DEV_SECRET), validation_alias="PERSON_KEY_SECRET"
    )
    pii_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET),
        validation_alias="PII_ENCRYPTION_KEY",
        description="Encrypts personal data at rest (AES-256-GCM); 32+ random characters",
    )

    # Every HTTP API: body size, and the API keys of hotlines, duty officers and administrators.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, validation_alias="MAX_BODY_BYTES")
    rate_limit: str = Field(
        default="100/second",
        validation_alias="RATE_LIMIT_PER_KEY",
        description="Per key and replica, in the `limits` notation: 50/second, 1000/minute",
    )
    signature_window_s: float = Field(default=300, gt=0, validation_alias="SIGNATURE_WINDOW_S")
    key_cache_s: float = Field(
        default=30,
        ge=0,
        validation_alias="API_KEY_CACHE_S",
        description="How soon a revoked key stops working",
    )

    @property
    def queue_options(self) -> QueueOptions:
        return QueueOptions(self.queue_type, self.delivery_limit, self.queue_max_length)

    def _secrets(self) -> dict[str, SecretStr]:
        return {
            name: value for name, value in self.__dict__.items() if isinstance(value, SecretStr)
        }

    @model_validator(mode="after")
    def _refuse_development_defaults(self) -> Self:
        if self.environment != "production":
            return self
        weak = [name for name, v in self._secrets().items() if v.get_secret_value() == DEV_SECRET]
        if "guest:guest@" in self.amqp_url:
            weak.append("amqp_url (guest credentials)")
        if weak:
            raise ValueError(
                "refusing development defaults in production: " + ", ".join(sorted(weak))
            )
        return self
