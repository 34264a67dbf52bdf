"""The fault suite's own servers: a RabbitMQ node it may stop, proxies it may cut."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.broker import RabbitNode

LEDGER: list[str] = []


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    if not RabbitNode.available():
        if os.environ.get("CI"):
            pytest.fail("rabbitmq-server is needed for the fault suite")
        pytest.skip("rabbitmq-server is not installed here")
    node = RabbitNode().start()
    try:
        yield node
    finally:
        node.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LEDGER:
        terminalreporter.section("fault ledger")
        for line in LEDGER:
            terminalreporter.write_line(line)
