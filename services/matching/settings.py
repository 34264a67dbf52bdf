from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import DEV_SECRET, CommonSettings

from .policy import DEFAULT_POLICY_FILE


class MatchingSettings(CommonSettings):
    port: int = Field(default=8001, validation_alias="MATCHING_PORT")
    policy_file: Path = Field(default=DEFAULT_POLICY_FILE, validation_alias="MATCHING_POLICY_FILE")
    registry_refresh_s: float = Field(default=30.0, gt=0, validation_alias="REGISTRY_REFRESH_S")
    stored_candidates: int = Field(default=5, ge=1, le=50, validation_alias="STORED_CANDIDATES")
    stored_exclusions: int = Field(default=20, ge=0, le=200, validation_alias="STORED_EXCLUSIONS")
    offer_link_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET), validation_alias="OFFER_LINK_KEY"
    )
    public_url: str = Field(default="http://127.0.0.1:8001", validation_alias="MATCHING_PUBLIC_URL")
    sweep_interval_s: float = Field(default=5.0, gt=0, validation_alias="OFFER_SWEEP_INTERVAL_S")
    outbox_relay_interval_s: float = Field(
        default=2.0, gt=0, validation_alias="OUTBOX_RELAY_INTERVAL_S"
    )
    outbox_grace_s: float = Field(default=5.0, ge=0, validation_alias="OUTBOX_GRACE_S")
    case_count_interval_s: float = Field(
        default=30.0,
        gt=0,
        validation_alias="CASE_COUNT_INTERVAL_S",
        description="How often the open-case gauges are counted from the store",
    )
    reconcile_interval_s: float = Field(
        default=60.0, gt=0, validation_alias="CLAIM_RECONCILE_INTERVAL_S"
    )
    reconcile_grace_s: float = Field(
        default=300.0,
        ge=0,
        validation_alias="CLAIM_RECONCILE_GRACE_S",
        description="A claim no case backs is released after looking stale this long",
    )
    ack_window_scale: float = Field(
        default=1.0,
        gt=0,
        validation_alias="ACK_WINDOW_SCALE",
        description="Multiplies every acknowledgement window (drills and tests use a small one)",
    )
