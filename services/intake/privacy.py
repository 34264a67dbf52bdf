"""What a caller may see of the person a case is about: everything for an operator whose district
it is, masked for a hotline (it reported the case; it does not need the data back)."""

from __future__ import annotations

from pydantic import BaseModel

from shared.auth import Caller
from shared.crypto import FieldCipher
from shared.labels import district_name
from shared.people import open_case_personal_data
from shared.pii import mask_name, mask_phone
from shared.storage import Document


class PersonView(BaseModel):
    masked: bool
    name: str
    phone: str
    carer_phone: str | None = None
    id_number: str | None = None
    certificate_number: str | None = None
    address: str
    disability_category: str
    disability_grade: int


def person_view(doc: Document, caller: Caller, cipher: FieldCipher) -> PersonView:
    person = open_case_personal_data(doc, cipher)
    if caller.sees_personal_data:
        return PersonView(
            masked=False,
            name=person.name,
            phone=person.phone,
            carer_phone=person.carer_phone,
            id_number=person.id_number,
            certificate_number=person.certificate_number,
            address=person.address,
            disability_category=person.disability_category.value,
            disability_grade=person.disability_grade,
        )
    return PersonView(
        masked=True,
        name=mask_name(person.name),
        phone=mask_phone(person.phone),
        carer_phone=mask_phone(person.carer_phone) if person.carer_phone else None,
        id_number=_mask_id(person.id_number),
        certificate_number=_mask_id(person.certificate_number),
        address=district_name(doc["location"]["division_code"]),
        disability_category=person.disability_category.value,
        disability_grade=person.disability_grade,
    )


def _mask_id(number: str | None) -> str | None:
    return None if number is None else f"{number[:2]}{'*' * (len(number) - 4)}{number[-2:]}"
