from pydantic import Field, SecretStr

from shared.settings import DEV_SECRET, CommonSettings


class IntakeSettings(CommonSettings):
    port: int = Field(default=8000, validation_alias="INTAKE_PORT")
    case_id_key: SecretStr = Field(default=SecretStr(DEV_SECRET), validation_alias="CASE_ID_KEY")
    outbox_relay_interval_s: float = Field(
        default=2.0, gt=0, validation_alias="OUTBOX_RELAY_INTERVAL_S"
    )
    outbox_grace_s: float = Field(default=5.0, ge=0, validation_alias="OUTBOX_GRACE_S")
    outbox_clear_interval_s: float = Field(
        default=0.25,
        gt=0,
        validation_alias="OUTBOX_CLEAR_INTERVAL_S",
        description="Published outbox marks are cleared together this often (one bulk write)",
    )
    shed_for_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias="SHED_FOR_S",
        description="After the broker refuses a publish (queue full), answer 503 this long",
    )
