"""Structured logs: one JSON object a line, with the service, case id and trace id where known,
and personal data masked before anything is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from shared.pii import mask_email, mask_phone, scrub_digits
from shared.telemetry import current_ids

MASK = "***"
# Keys whose values are personal data whatever they contain (structured `extra=` fields).
PII_KEYS = frozenset(
    {
        "name",
        "person_name",
        "helper_name",
        "phone",
        "carer_phone",
        "address",
        "id_number",
        "certificate_number",
        "email",
        "person",
        "contact",
        "description",
    }
)
CONTEXT_KEYS = ("service", "case_id", "trace_id", "span_id")
DROPPED = frozenset({"color_message"})  # uvicorn's ANSI-coloured copy of the message
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Phone numbers written with separators (`+86 139-1234-5678`, `027-8765 4321`): 10+ digits.
_SPACED_PHONE = re.compile(r"(?<![0-9A-Za-z])\+?\d(?:[ -]?\d){9,}(?![0-9A-Za-z])")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?:[1-7][1-4])?(?![0-9A-Za-z])")
# pydantic echoes the offending input in its errors: `input_value='13800138000'`.
_INPUT_VALUE = re.compile(r"input_value=(?:'[^']*'|\"[^\"]*\"|\{.*?\}|\[.*?\]|[^,\s\]]+)")

_case_id: ContextVar[str | None] = ContextVar("carerelay_case_id", default=None)
_redacted: ContextVar[frozenset[str]] = ContextVar("carerelay_redacted", default=frozenset())


@contextmanager
def case_context(case_id: str | None) -> Iterator[None]:
    """Every log line written inside carries this case id."""
    token = _case_id.set(case_id)
    try:
        yield
    finally:
        _case_id.reset(token)


def current_case_id() -> str | None:
    return _case_id.get()


@contextmanager
def redacting(values: Iterable[str | None]) -> Iterator[None]:
    """Mask these exact strings (a person's name, address...) in every log line written inside."""
    extra = {v.strip() for v in values if v and len(v.strip()) >= 2}
    token = _redacted.set(_redacted.get() | extra)
    try:
        yield
    finally:
        _redacted.reset(token)


def person_values(body: Mapping[str, Any]) -> list[str]:
    """The identifying strings of a report-shaped body, for `redacting`."""
    person = body.get("person")
    location = body.get("location")
    found: list[str] = []
    if isinstance(person, Mapping):
        found += [str(person[k]) for k in PII_KEYS & person.keys() if person[k]]
    if isinstance(location, Mapping) and location.get("address"):
        found.append(str(location["address"]))
    return found


def mask_text(text: str) -> str:
    for value in sorted(_redacted.get(), key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _INPUT_VALUE.sub("input_value=" + MASK, text)
    text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    text = _ID_NUMBER.sub(MASK, text)
    text = _SPACED_PHONE.sub(lambda m: mask_phone(m.group()), text)
    return scrub_digits(text)


def _mask(key: str, value: Any) -> Any:
    if key in PII_KEYS and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {str(k): _mask(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask("", v) for v in value]
    return value


class ContextFilter(logging.Filter):
    """Stamps each record with the case and trace it was written in (at emit time, same task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "case_id", None) is None:
            record.case_id = _case_id.get()
        if getattr(record, "trace_id", None) is None:
            ids = current_ids()
            record.trace_id, record.span_id = ids if ids else (None, None)
        return True


class CareRelayJsonFormatter(JsonFormatter):
    def __init__(self, service: str) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service},
            timestamp="time",
            json_ensure_ascii=False,
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {
            key: value if key in CONTEXT_KEYS or key == "time" else _mask(key, value)
            for key, value in log_data.items()
            if (value is not None or key in ("case_id", "trace_id")) and key not in DROPPED
        }


def configure(level: str, service: str, stream: TextIO | None = None) -> logging.Handler:
    """Route every logger (ours, uvicorn's, FastStream's) to one JSON handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(CareRelayJsonFormatter(service))
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in ("uvicorn", "uvicorn.error", "faststream"):
        other = logging.getLogger(name)
        other.handlers.clear()
        other.propagate = True
    return handler
