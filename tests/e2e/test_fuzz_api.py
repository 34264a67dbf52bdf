"""Schemathesis against intake's own OpenAPI document, on the running service with a valid key:
whatever it is sent — inside or outside the schema — it never answers 5xx, never breaks its
documented responses, and every refusal (4xx) says why in a message."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.devstack import DevStack
from tests.support import bearer, free_ports, started_stack

REGISTRY = {
    "helpers": [{"id": "desk", "kind": "duty_desk", "name": "值班室", "divisions": ["420000"]}]
}


@pytest.fixture(scope="module")
def stack(
    amqp_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    with started_stack(
        tmp_path_factory.mktemp("var"),
        REGISTRY,
        free_ports("intake", "matching", "notify"),
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "MONGO_DB": f"fuzz_{uuid.uuid4().hex[:8]}",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_PER_KEY": "100000/second",
        },
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def admin_key(stack: DevStack) -> str:
    created = stack.cli("keys", "create", "--name", "fuzzer", "--role", "admin")
    return created.split("api key:")[1].split()[0]


WITH_BODIES = ["POST /v1/reports", "POST /v1/cases/{case_id}/resolution"]
OPERATIONS = [
    *((label, GenerationMode.POSITIVE) for label in [*WITH_BODIES, "GET /v1/cases/{case_id}"]),
    *((label, GenerationMode.NEGATIVE) for label in WITH_BODIES),  # outside the schema
]


def says_why(response: Any) -> None:
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and body.get("message"), f"{response.status_code}: {body}"


@pytest.mark.parametrize(("label", "mode"), OPERATIONS, ids=lambda x: getattr(x, "value", x))
def test_intake_never_fails_and_always_says_why(
    stack: DevStack, admin_key: str, label: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url('intake')}/openapi.json")
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is documented"
    tried: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def exchange(case: Case[Any]) -> None:
        response = case.call(base_url=stack.url("intake"), headers=bearer(admin_key), timeout=15)
        tried.append(response.status_code)
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance],
        )  # fmt: skip
        says_why(response)

    exchange()
    assert tried, "hypothesis generated requests"
    if (label, mode) == ("POST /v1/reports", GenerationMode.POSITIVE):
        assert 202 in tried, "valid generated reports reached the case store"
