"""Structured logs: one JSON object a line, context stamped on, personal data masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from shared.contracts import HardshipReport
from shared.logging_json import CareRelayJsonFormatter, ContextFilter, case_context, redacting

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(CareRelayJsonFormatter("intake"))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("carerelay.test-logging")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_line_is_one_json_object_with_service_level_and_case_id(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log
    with case_context("3f2a9c"):
        logger.info("first\nsecond")
    logger.warning("outside")
    inside, outside = lines(out)
    assert inside["message"] == "first\nsecond"
    assert (inside["service"], inside["level"], inside["case_id"]) == ("intake", "INFO", "3f2a9c")
    assert outside["case_id"] is None and outside["trace_id"] is None


def test_phone_id_and_certificate_numbers_and_emails_in_a_message_are_masked(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log
    logger.info(
        "call %s or +86 139-1234-5678, id %s, cert %s, mail %s",
        "13812345678",
        "42010319800101123X",
        "4201031980010112341" + "2",
        "zhang.xiuying@example.cn",
    )
    [line] = lines(out)
    for secret in ("13812345678", "1234-5678", "42010319800101123X", "zhang.xiuying"):
        assert secret not in line["message"]
    assert "*******5678" in line["message"] and "z***@example.cn" in line["message"]


def test_a_persons_name_and_address_are_masked_while_their_report_is_handled(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log
    name, address = EXAMPLE["person"]["name"], EXAMPLE["location"]["address"]
    with redacting([name, address]):
        logger.info("report about %s living at %s", name, address)
    [line] = lines(out)
    assert name not in line["message"] and address not in line["message"]
    assert line["message"] == "report about *** living at ***"


def test_personal_fields_passed_as_extra_are_masked_whatever_they_hold(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log
    logger.info(
        "helper told", extra={"helper_name": "李红", "phone": "139", "channel": "wechat_work"}
    )
    [line] = lines(out)
    assert (line["helper_name"], line["phone"], line["channel"]) == ("***", "***", "wechat_work")


def test_validation_errors_do_not_echo_the_input_into_the_log(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log
    body = EXAMPLE | {"person": EXAMPLE["person"] | {"phone": "王小明家里电话"}}
    with pytest.raises(ValidationError) as error:
        HardshipReport.model_validate(body)
    assert "王小明" in str(error.value), "pydantic echoes the input; the log must not"
    logger.error("bad report: %s", error.value)
    [line] = lines(out)
    assert "王小明" not in line["message"] and "person.phone" in line["message"]


def test_ids_that_are_not_personal_data_stay_readable(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log
    logger.info("case %s event %s", "9f86d081884c7d659a2feaa0c55ad015", "a1b2c3d4e5f60718")
    [line] = lines(out)
    assert line["message"] == "case 9f86d081884c7d659a2feaa0c55ad015 event a1b2c3d4e5f60718"
