from typing import Self

from pydantic import Field, SecretStr, model_validator

from shared.settings import CommonSettings

from .channels.settings import ChannelSettings


class NotifySettings(CommonSettings, ChannelSettings):
    port: int = Field(default=8002, validation_alias="NOTIFY_PORT")
    locale: str = Field(default="zh-CN", validation_alias="NOTIFY_LOCALE")
    team_webhook: str | None = Field(default=None, validation_alias="WECHAT_WORK_WEBHOOK_URL")
    duty_desk_webhook: str | None = Field(default=None, validation_alias="DUTY_DESK_WEBHOOK_URL")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", validation_alias="PUBLIC_BASE_URL"
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        validation_alias="NOTIFY_MAX_ATTEMPTS",
        description="Attempts per channel before falling back to the next one",
    )
    retry_base_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias="NOTIFY_RETRY_BASE_S",
        description="First retry delay; each next one doubles (with jitter)",
    )
    interrupted_after_s: float = Field(
        default=120.0,
        gt=0,
        validation_alias="NOTIFY_INTERRUPTED_AFTER_S",
        description="An attempt still `sending` this long was cut off mid-send: dead-letter it",
    )
    interrupted_sweep_s: float = Field(
        default=30.0, gt=0, validation_alias="NOTIFY_INTERRUPTED_SWEEP_S"
    )
    registry_refresh_s: float = Field(
        default=300.0, gt=0, validation_alias="NOTIFY_REGISTRY_REFRESH_S"
    )
    receipt_token: SecretStr | None = Field(
        default=None,
        validation_alias="SMS_RECEIPT_TOKEN",
        description="Delivery receipts must carry ?token=<this>; required in production",
    )

    @model_validator(mode="after")
    def _receipts_protected_in_production(self) -> Self:
        if self.environment == "production" and self.sms_provider and self.receipt_token is None:
            raise ValueError("SMS_RECEIPT_TOKEN is required in production when SMS is on")
        return self
