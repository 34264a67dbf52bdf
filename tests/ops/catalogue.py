"""The metric names alerts and dashboards may use: what the services register, what the other
services have agreed to export, FastStream's and RabbitMQ's own."""

from __future__ import annotations

import os
import re
import shutil
from functools import cache
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "carerelay.json"

# Agreed with the matching and notify work (issue 6's brief); labels bounded.
AGREED = {
    "carerelay_matching_report_to_first_offer_seconds": "histogram",
    "carerelay_matching_offers_total": "counter",
    "carerelay_matching_offer_answers_total": "counter",
    "carerelay_matching_escalations_total": "counter",
    "carerelay_matching_candidate_search_seconds": "histogram",
    "carerelay_matching_open_cases": "gauge",
    "carerelay_matching_first_contact_overdue": "gauge",
    "carerelay_matching_resolved_total": "counter",
    "carerelay_matching_claim_conflicts_total": "counter",
    "carerelay_notify_sends_total": "counter",
    "carerelay_notify_report_to_first_outreach_seconds": "histogram",
    "carerelay_notify_attempts_total": "counter",
    "carerelay_notify_retries_total": "counter",
    "carerelay_notify_receipts_total": "counter",
    "carerelay_notify_failed_total": "counter",
    "carerelay_notify_callbacks_total": "counter",
}
# faststream/prometheus/container.py (RabbitPrometheusMiddleware), prefix `faststream`.
FASTSTREAM = {
    "faststream_received_messages_total": "counter",
    "faststream_received_messages_size_bytes": "histogram",
    "faststream_received_messages_in_process": "gauge",
    "faststream_received_processed_messages_total": "counter",
    "faststream_received_processed_messages_duration_seconds": "histogram",
    "faststream_received_processed_messages_exceptions_total": "counter",
    "faststream_published_messages_total": "counter",
    "faststream_published_messages_duration_seconds": "histogram",
    "faststream_published_messages_exceptions_total": "counter",
}
# RabbitMQ's rabbitmq_prometheus plugin: /metrics (aggregated) and /metrics/detailed with the
# families queue_coarse_metrics and queue_consumer_count that prometheus.yml asks for.
RABBITMQ = {
    "rabbitmq_detailed_queue_messages_ready": "gauge",
    "rabbitmq_detailed_queue_messages_unacked": "gauge",
    "rabbitmq_detailed_queue_messages": "gauge",
    "rabbitmq_detailed_queue_consumers": "gauge",
    "rabbitmq_connections": "gauge",
    "rabbitmq_channels": "gauge",
    "rabbitmq_consumers": "gauge",
    "rabbitmq_queue_messages_ready": "gauge",
    "rabbitmq_queue_messages_unacked": "gauge",
    "rabbitmq_global_messages_received_total": "counter",
    "rabbitmq_global_messages_delivered_total": "counter",
    "rabbitmq_global_messages_dead_lettered_confirmed_total": "counter",
    "rabbitmq_resident_memory_limit_bytes": "gauge",
    "rabbitmq_process_resident_memory_bytes": "gauge",
    "rabbitmq_disk_space_available_bytes": "gauge",
    "rabbitmq_alarms_memory_used_watermark": "gauge",
    "rabbitmq_alarms_free_disk_space_watermark": "gauge",
}
PROMETHEUS = {"up": "gauge"}
_NAME = re.compile(r"\b((?:carerelay|faststream|rabbitmq)_[a-z0-9_]+|up)\b")
_SUFFIXES = ("_bucket", "_sum", "_count")


@cache
def registered() -> dict[str, str]:
    """Every metric the three services register at build time (no I/O), with its type."""
    from services.intake.app import build_app as intake
    from services.matching.app import build_app as matching
    from services.notify.app import build_app as notify

    found: dict[str, str] = {}
    for build in (intake, matching, notify):
        registry: CollectorRegistry = build().state.runtime.registry
        for metric in registry.collect():
            name = metric.name + ("_total" if metric.type == "counter" else "")
            found[name] = metric.type
    return found


def known() -> dict[str, str]:
    return {**AGREED, **FASTSTREAM, **RABBITMQ, **PROMETHEUS, **registered()}


def metrics_in(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label names and functions are not matched)."""
    names = set()
    for match in _NAME.finditer(expr):
        name = match.group(1)
        before = expr[: match.start()].rstrip()
        if before.endswith(("by (", "by(", ",", "without (")) and name == "up":
            continue
        names.add(name)
    return names


def unknown_metrics(expr: str) -> set[str]:
    catalogue = known()
    missing = set()
    for name in metrics_in(expr):
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
        if name in catalogue or catalogue.get(base) == "histogram":
            continue
        missing.add(name)
    return missing


def debian_tool(name: str) -> str:
    """A tool from Debian's `prometheus` package, which `make test` installs."""
    tool = shutil.which(name)
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing; `make tools` installs it (Debian package prometheus)")
        pytest.skip(f"{name} not installed (make test installs it)")
    return tool
