"""Development defaults never reach production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.intake.settings import IntakeSettings
from services.matching.settings import MatchingSettings
from shared.settings import DEV_SECRET

STRONG = {
    "CARERELAY_ENV": "production",
    "AMQP_URL": "amqp://carerelay:s3cret@rabbitmq:5672/",
    "CASE_ID_KEY": "c" * 40,
    "PERSON_KEY_SECRET": "p" * 40,
    "PII_ENCRYPTION_KEY": "e" * 40,
    "OFFER_LINK_KEY": "o" * 40,
}


def test_production_with_real_secrets_starts() -> None:
    assert IntakeSettings(**STRONG).environment == "production"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("CASE_ID_KEY", "case_id_key"),
        ("PERSON_KEY_SECRET", "person_key_secret"),
        ("PII_ENCRYPTION_KEY", "pii_key"),
    ],
)
def test_production_refuses_a_development_secret_naming_it(variable: str, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        IntakeSettings(**(STRONG | {variable: DEV_SECRET}))  # type: ignore[arg-type]


def test_production_refuses_the_guest_broker_account() -> None:
    guest = STRONG | {"AMQP_URL": "amqp://guest:guest@rabbitmq:5672/"}
    with pytest.raises(ValidationError, match="guest credentials"):
        MatchingSettings(**guest)  # type: ignore[arg-type]


def test_production_refuses_the_development_offer_link_key() -> None:
    with pytest.raises(ValidationError, match="offer_link_key"):
        MatchingSettings(**(STRONG | {"OFFER_LINK_KEY": DEV_SECRET}))  # type: ignore[arg-type]
