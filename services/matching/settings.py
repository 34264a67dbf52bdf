from pathlib import Path

from pydantic import Field

from shared.settings import CommonSettings

from .policy import DEFAULT_POLICY_FILE


class MatchingSettings(CommonSettings):
    port: int = Field(default=8001, validation_alias="MATCHING_PORT")
    policy_file: Path = Field(default=DEFAULT_POLICY_FILE, validation_alias="MATCHING_POLICY_FILE")
    registry_refresh_s: float = Field(default=30.0, gt=0, validation_alias="REGISTRY_REFRESH_S")
    stored_candidates: int = Field(default=5, ge=1, le=50, validation_alias="STORED_CANDIDATES")
    stored_exclusions: int = Field(default=20, ge=0, le=200, validation_alias="STORED_EXCLUSIONS")
