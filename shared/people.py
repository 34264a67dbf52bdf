"""The person a case is about: stored sealed, linked across cases only by keyed hashes.

Identifying fields (name, phone numbers, ID and certificate numbers, address, the free-text
description) are encrypted at rest; what matching and the metrics need (disability category
and grade, household facts) stays readable but identifies nobody on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from shared.contracts import ContactChannel, DisabilityCategory, HardshipReport
from shared.crypto import FieldCipher

SEALED_PERSON_FIELDS = ("name", "phone", "carer_phone", "id_number", "certificate_number")


def person_key(phone: str, key: bytes) -> str:
    """The same person (by mobile number, with or without +86) always gets the same key;
    without the key nobody can tell whose it is."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return hmac.new(key, b"phone:" + digits.encode(), hashlib.sha256).hexdigest()[:32]


def id_key(id_number: str, key: bytes) -> str:
    """Keyed hash of an ID number, for equality lookups without storing the number."""
    return hmac.new(key, b"id:" + id_number.upper().encode(), hashlib.sha256).hexdigest()[:32]


def _context(case_id: str, field: str) -> str:
    return f"case:{case_id}:{field}"


def seal_report(
    report: HardshipReport, case_id: str, cipher: FieldCipher, hash_key: bytes
) -> dict[str, Any]:
    """The `person`, `location` and `description` fields of a case document, sealed."""
    person = report.person.model_dump(mode="json")
    for field in SEALED_PERSON_FIELDS:
        person[field] = cipher.seal_optional(
            person.get(field), _context(case_id, f"person.{field}")
        )
    person["person_key"] = person_key(report.person.phone, hash_key)
    if report.person.id_number:
        person["id_key"] = id_key(report.person.id_number, hash_key)
    location = report.location.model_dump(mode="json")
    location["address"] = cipher.seal(
        report.location.address, _context(case_id, "location.address")
    )
    return {
        "person": person,
        "location": location,
        "description": cipher.seal(report.description, _context(case_id, "description")),
    }


@dataclass(frozen=True)
class PersonalData:
    """A case's personal data, opened: for the send itself and for those whose role needs it."""

    name: str
    phone: str
    carer_phone: str | None
    id_number: str | None
    certificate_number: str | None
    address: str
    description: str
    disability_category: DisabilityCategory
    disability_grade: int
    preferred_channel: ContactChannel | None


def open_case_personal_data(doc: dict[str, Any], cipher: FieldCipher) -> PersonalData:
    """Open the sealed fields of a case document (it must hold `person`, `location` and
    `description`)."""
    case_id = str(doc["_id"])
    person = doc["person"]
    opened = {
        field: cipher.open_optional(person.get(field), _context(case_id, f"person.{field}"))
        for field in SEALED_PERSON_FIELDS
    }
    preferred = person.get("preferred_channel")
    return PersonalData(
        name=opened["name"] or "",
        phone=opened["phone"] or "",
        carer_phone=opened["carer_phone"],
        id_number=opened["id_number"],
        certificate_number=opened["certificate_number"],
        address=cipher.open(doc["location"]["address"], _context(case_id, "location.address")),
        description=cipher.open(doc["description"], _context(case_id, "description")),
        disability_category=DisabilityCategory(person["disability"]["category"]),
        disability_grade=int(person["disability"]["grade"]),
        preferred_channel=ContactChannel(preferred) if preferred else None,
    )
