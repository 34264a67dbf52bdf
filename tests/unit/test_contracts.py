"""The public report contract and the events: what is accepted, what is refused, and why."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.intake.domain import case_id_for, open_case
from shared.contracts import CaseAssigned, HardshipReport, HardshipReported
from shared.crypto import FieldCipher

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
CIPHER = FieldCipher("unit-test-key")
NOW = datetime(2022, 11, 22, tzinfo=UTC)


def report(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return body


def bad_fields(body: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        HardshipReport.model_validate(body)
    return {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


def test_the_documented_example_is_a_valid_report() -> None:
    assert HardshipReport.model_validate(EXAMPLE).need == "medicine"


def test_unknown_need_is_refused_naming_the_field() -> None:
    assert bad_fields(report(need="unicorns")) == {"need"}


def test_grade_seven_is_refused_naming_the_field() -> None:
    assert bad_fields(report(person__disability__grade=7)) == {"person.disability.grade"}


def test_latitude_200_is_refused_naming_the_field() -> None:
    assert bad_fields(report(location__lat=200)) == {"location.lat"}


def test_time_without_offset_is_refused() -> None:
    assert bad_fields(report(reported_at="2022-11-22T08:15:00")) == {"reported_at"}


@pytest.mark.parametrize("code", ["42010", "4201030", "42010300100", "abcdef"])
def test_division_code_must_have_6_9_or_12_digits(code: str) -> None:
    assert bad_fields(report(location__division_code=code)) == {"location.division_code"}


@pytest.mark.parametrize("code", ["420103", "420103001", "420103001002"])
def test_division_codes_of_6_9_and_12_digits_are_accepted(code: str) -> None:
    assert HardshipReport.model_validate(report(location__division_code=code))


def test_every_bad_field_is_named_at_once() -> None:
    body = report(need="x", person__disability__grade=0, location__lon=500, person__phone="call me")
    assert bad_fields(body) == {"need", "person.disability.grade", "location.lon", "person.phone"}


def test_fields_a_hotline_adds_are_ignored_not_refused() -> None:
    assert HardshipReport.model_validate(report(hotline_operator="0042"))


def test_same_ticket_gives_the_same_case_id_and_another_ticket_another() -> None:
    key = b"k"
    assert case_id_for("12345-wuhan", "A1", key) == case_id_for("12345-wuhan", "A1", key)
    assert case_id_for("12345-wuhan", "A1", key) != case_id_for("12345-wuhan", "A2", key)
    assert case_id_for("12345-wuhan", "A1", key) != case_id_for("12345-wuhan", "A1", b"other")


def test_reported_event_carries_no_name_phone_or_address() -> None:
    now = datetime(2022, 11, 22, tzinfo=UTC)
    _, event = open_case(HardshipReport.model_validate(EXAMPLE), "c1", now, CIPHER, b"k")
    wire = event.model_dump_json()
    person = EXAMPLE["person"]
    for secret in (person["name"], person["phone"], EXAMPLE["location"]["address"]):
        assert secret not in wire


def test_events_carry_id_time_schema_version_and_case_id() -> None:
    now = datetime(2022, 11, 22, tzinfo=UTC)
    _, event = open_case(HardshipReport.model_validate(EXAMPLE), "c1", now, CIPHER, b"k")
    dumped = event.model_dump(mode="json")
    assert {"event_id", "occurred_at", "schema_version", "case_id"} <= dumped.keys()


def test_consumers_tolerate_fields_added_by_a_newer_producer() -> None:
    now = datetime(2022, 11, 22, tzinfo=UTC)
    _, event = open_case(HardshipReport.model_validate(EXAMPLE), "c1", now, CIPHER, b"k")
    newer = {**event.model_dump(mode="json"), "added_in_v2": {"anything": 1}}
    assert HardshipReported.model_validate(newer).case_id == "c1"


def test_event_slots_hold_no_dots() -> None:
    assert CaseAssigned.slot() == "case_assigned"


def test_id_and_certificate_numbers_are_checked_naming_the_field() -> None:
    body = report(person__id_number="12345", person__certificate_number="42010319560312002X91")
    assert bad_fields(body) == {"person.id_number", "person.certificate_number"}


def test_case_events_carry_the_hotline_reference() -> None:
    _, event = open_case(HardshipReport.model_validate(EXAMPLE), "c1", NOW, CIPHER, b"k")
    assert (event.source, event.external_id) == ("12345-wuhan", "WH20221122-004518")
    assert event.facts.external_id == "WH20221122-004518"
