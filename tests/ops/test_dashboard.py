"""The Grafana dashboard and its provisioning: every panel reads metrics that exist, with PromQL
that Prometheus accepts, from the provisioned data source."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.ops.catalogue import (
    AGREED,
    DASHBOARD,
    ROOT,
    debian_tool,
    metrics_in,
    registered,
    unknown_metrics,
)

PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def as_prometheus_sees_it(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m")


def test_every_panel_reads_metrics_that_exist() -> None:
    for panel in panels():
        for target in panel["targets"]:
            assert metrics_in(target["expr"]), panel["title"]
            assert not unknown_metrics(target["expr"]), panel["title"]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    recording = [
        {"record": f"dashboard:panel_{i}", "expr": as_prometheus_sees_it(expr)}
        for i, expr in enumerate(expressions())
    ]
    rules = tmp_path / "dashboard.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    done = subprocess.run(  # noqa: S603 - promtool with our own file
        [debian_tool("promtool"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(recording)} rules found" in done.stdout


def test_the_dashboard_shows_what_operations_asked_for() -> None:
    titles = " | ".join(p["title"].lower() for p in panels())
    for wanted in (
        "throughput",
        "report to first offer",
        "queue depth",
        "open cases by status",
        "sla breaches",
        "escalations",
        "outreach failures by channel",
        "dead-letter",
    ):
        assert wanted in titles, wanted


def test_panels_use_the_provisioned_data_source_and_fit_the_grid() -> None:
    [source] = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert [t["refId"] for t in panel["targets"]] == [
            chr(65 + i) for i in range(len(panel["targets"]))
        ]


def test_the_dashboard_provider_loads_the_folder_compose_mounts() -> None:
    [provider] = yaml.safe_load((PROVISIONING / "dashboards" / "carerelay.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert dashboard()["uid"] == "carerelay-ops"


def test_metrics_agreed_with_the_other_services_have_the_agreed_type_once_registered() -> None:
    # Alerts take max() of gauges and histogram_quantile() of histograms: a metric registered
    # with another type than agreed would silently break them.
    found = registered()
    for name, kind in AGREED.items():
        if name in found:
            assert found[name] == kind, name
    assert found["carerelay_intake_reports_total"] == "counter"
    assert found["carerelay_http_request_duration_seconds"] == "histogram"
    assert found["carerelay_notify_sends_total"] == AGREED["carerelay_notify_sends_total"]
