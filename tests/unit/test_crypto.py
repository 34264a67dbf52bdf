"""Sealing personal data at rest: what opens, and what refuses to."""

from __future__ import annotations

import pytest

from shared.crypto import FieldCipher, UnreadableField

CIPHER = FieldCipher("a key only these tests know")


def test_a_sealed_value_opens_in_its_own_place() -> None:
    sealed = CIPHER.seal("13800138000", "case:c1:person.phone")
    assert "13800138000" not in sealed
    assert CIPHER.open(sealed, "case:c1:person.phone") == "13800138000"


def test_the_same_value_sealed_twice_looks_different() -> None:
    assert CIPHER.seal("13800138000", "x") != CIPHER.seal("13800138000", "x")


def test_a_value_copied_into_another_case_does_not_open() -> None:
    sealed = CIPHER.seal("13800138000", "case:c1:person.phone")
    with pytest.raises(UnreadableField, match="case:c2"):
        CIPHER.open(sealed, "case:c2:person.phone")


def test_another_key_cannot_open_it() -> None:
    sealed = CIPHER.seal("张秀英", "case:c1:person.name")
    with pytest.raises(UnreadableField):
        FieldCipher("another key").open(sealed, "case:c1:person.name")


def test_a_tampered_value_does_not_open() -> None:
    sealed = CIPHER.seal("张秀英", "case:c1:person.name")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(UnreadableField):
        CIPHER.open(tampered, "case:c1:person.name")


def test_a_plain_value_is_not_taken_for_a_sealed_one() -> None:
    with pytest.raises(UnreadableField, match="not a sealed value"):
        CIPHER.open("13800138000", "case:c1:person.phone")
