"""Prometheus configuration and alert rules: valid for promtool, complete enough for an on-call
engineer, and firing (or not) as intended on synthetic series (`promtool test rules`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.topology import ALL_ROUTES, registry_queue
from tests.ops.catalogue import PROMETHEUS_DIR, debian_tool, unknown_metrics

ALERTS = PROMETHEUS_DIR / "alerts.yml"
TEAM = {"team": "carerelay-ops"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - promtool with our own files
        [debian_tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_compose_prometheus_config_and_its_rules_pass_promtool() -> None:
    done = run("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "rules found" in done.stdout


def test_kubernetes_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    # Debian builds Prometheus without Kubernetes discovery, so promtool checks everything else
    # (relabelling, paths, params, rules) with the discovery swapped for a static target.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-k8s.yml").read_text(encoding="utf-8"))
    for job in config["scrape_configs"]:
        [discovery] = job.pop("kubernetes_sd_configs")
        assert discovery["role"] == "pod"
        job["static_configs"] = [{"targets": ["127.0.0.1:1"]}]
    config["rule_files"] = [str(ALERTS)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    done = run("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    relabel = {job["job_name"]: job["relabel_configs"] for job in config["scrape_configs"]}
    keep = relabel["carerelay-pods"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]


def test_alert_rules_pass_promtool() -> None:
    done = run("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_tells_the_on_call_engineer_what_and_what_to_do() -> None:
    for rule in rules():
        annotations, labels = rule["annotations"], rule["labels"]
        assert annotations.keys() >= {"summary", "description", "runbook"}, rule["alert"]
        assert len(annotations["runbook"]) > 80, rule["alert"]
        assert labels["severity"] in ("critical", "warning") and labels["team"], rule["alert"]


def test_alerts_read_only_metrics_that_exist() -> None:
    for rule in rules():
        assert not unknown_metrics(rule["expr"]), rule["alert"]


def test_queue_alerts_cover_every_work_queue_and_no_dead_letter_or_replica_queue() -> None:
    [rule] = [r for r in rules() if r["alert"] == "QueueHasNoConsumer"]
    matchers = dict(re.findall(r'queue(=~|!~)"([^"]+)"', rule["expr"]))
    include = re.compile(matchers["=~"].replace("\\\\", "\\"))
    exclude = re.compile(matchers["!~"].replace("\\\\", "\\"))

    def watched(queue: str) -> bool:
        return bool(include.fullmatch(queue)) and not exclude.fullmatch(queue)

    assert all(watched(route.queue) for route in ALL_ROUTES)
    assert not any(watched(route.dead_letter_queue) for route in ALL_ROUTES)
    assert not watched(registry_queue("a1b2c3").name)


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def alert(name: str, at: str, *expected: dict[str, str], summary: str = "") -> dict[str, Any]:
    """Expected alerts by labels; with `summary`, also its rendered summary (and so its value)."""
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {"exp_labels": labels} | ({"exp_annotations": {"summary": summary}} if summary else {})
            for labels in expected
        ],
    }


SCENARIOS: list[dict[str, Any]] = [
    {  # two matching replicas report the same count from the store: max, not sum
        "interval": "1m",
        "input_series": [
            series(
                "carerelay_matching_first_contact_overdue",
                "0 0 3x30" if p == "P1" else "0 2x30",
                priority=p,
                instance=i,
            )
            for p in ("P1", "P3")
            for i in ("matching-1", "matching-2")
        ],
        "alert_rule_test": [
            alert("UrgentCasesPastFirstContactDeadline", "2m"),
            alert(
                "UrgentCasesPastFirstContactDeadline",
                "4m",
                {"priority": "P1", "severity": "critical", **TEAM},
                summary="3 P1 case(s) past their first-contact deadline",
            ),
            alert("CasesPastFirstContactDeadline", "5m"),
            alert(
                "CasesPastFirstContactDeadline",
                "15m",
                {"priority": "P3", "severity": "warning", **TEAM},
            ),
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {"series": f'rabbitmq_detailed_queue_consumers{{vhost="/",queue="{q}"}}', "values": v}
            for q, v in (
                ("intake.reports", "1x10"),
                ("notify.case-assigned", "1 1 0x10"),
                ("notify.case-assigned.dlq", "0x10"),
                ("matching.registry.a1b2c3", "0x10"),
            )
        ],
        "alert_rule_test": [
            alert("QueueHasNoConsumer", "3m"),
            alert(
                "QueueHasNoConsumer",
                "5m",
                {"vhost": "/", "queue": "notify.case-assigned", "severity": "critical", **TEAM},
            ),
        ],
    },
    {  # new dead letters page; a dead-letter queue that stopped growing stops paging
        "interval": "1m",
        "input_series": [
            series(
                "rabbitmq_detailed_queue_messages",
                "0x5 1 2 3x40",
                vhost="/",
                queue="matching.hardship-reported.dlq",
            ),
            series(
                "rabbitmq_detailed_queue_messages",
                "5x45",
                vhost="/",
                queue="notify.case-assigned.dlq",
            ),
        ],
        "alert_rule_test": [
            alert("DeadLetterQueueGrowing", "4m"),
            alert(
                "DeadLetterQueueGrowing",
                "10m",
                {
                    "vhost": "/",
                    "queue": "matching.hardship-reported.dlq",
                    "severity": "critical",
                    **TEAM,
                },
                summary="Messages are being dead-lettered into matching.hardship-reported.dlq "
                "(3 now)",
            ),
            alert("DeadLetterQueueGrowing", "40m"),
        ],
    },
    {  # intake is down, matching is up, notify has no target at all
        "interval": "1m",
        "input_series": [
            {
                "series": 'up{job="carerelay-intake",service="intake",instance="intake:8000"}',
                "values": "0x10",
            },
            {
                "series": 'up{job="carerelay-matching",service="matching",instance="m:8001"}',
                "values": "1x10",
            },
        ],
        "alert_rule_test": [
            alert(
                "NoReplicaServing",
                "5m",
                {"service": "intake", "severity": "critical", **TEAM},
                {"service": "notify", "severity": "critical", **TEAM},
            ),
            alert(
                "ServiceDown",
                "5m",
                {
                    "job": "carerelay-intake",
                    "service": "intake",
                    "instance": "intake:8000",
                    "severity": "critical",
                    **TEAM,
                },
            ),
        ],
    },
    {  # every first offer takes two to five minutes
        "interval": "1m",
        "input_series": [
            {
                "series": f'carerelay_matching_report_to_first_offer_seconds_bucket{{le="{le}"}}',
                "values": values,
            }
            for le, values in (("60", "0x40"), ("300", "0+10x40"), ("+Inf", "0+10x40"))
        ],
        "alert_rule_test": [
            alert("TimeToFirstOfferP95AboveTarget", "10m"),
            alert("TimeToFirstOfferP95AboveTarget", "35m", {"severity": "warning", **TEAM}),
        ],
    },
    {  # a hotline sends unparseable AMQP reports: no HTTP refusals at all, still an alert
        "interval": "1m",
        "input_series": [
            series(
                "faststream_received_processed_messages_total",
                values,
                app_name="intake",
                handler="carerelay.events.report.submitted",
                status=status,
            )
            for status, values in (("rejected", "0+5x40"), ("acked", "0+5x40"))
        ]
        + [
            series(
                "carerelay_intake_reports_total",
                "0+5x40",
                source="12345-wuhan",
                need="medicine",
                result="accepted",
            )
        ],
        "alert_rule_test": [
            alert("ReportsRejectedAsInvalid", "10m"),
            alert("ReportsRejectedAsInvalid", "30m", {"severity": "warning", **TEAM}),
        ],
    },
    {  # half the WeChat Work sends fail, email is fine; one message reached nobody
        "interval": "1m",
        "input_series": [
            series("carerelay_notify_sends_total", v, channel=c, purpose="assignment", result=r)
            for c, r, v in (
                ("wechat_work", "failed", "0+5x30"),
                ("wechat_work", "sent", "0+5x30"),
                ("email", "sent", "0+10x30"),
                ("email", "failed", "0x30"),
            )
        ]
        + [
            {
                "series": 'carerelay_notify_failed_total{channel="all",purpose="assignment"}',
                "values": "0x10 1x20",
            }
        ],
        "alert_rule_test": [
            alert(
                "OutreachChannelFailing",
                "25m",
                {"channel": "wechat_work", "severity": "warning", **TEAM},
            ),
            alert("OutreachExhausted", "5m"),
            alert(
                "OutreachExhausted",
                "12m",
                {"purpose": "assignment", "severity": "critical", **TEAM},
            ),
        ],
    },
]


def only_summaries(path: Path, scenario: dict[str, Any]) -> dict[str, Any]:
    """promtool compares annotations exactly: keep the summary only of the alerts whose summary
    a scenario checks, and no annotation of the others."""
    checked = {
        test["alertname"]
        for test in scenario["alert_rule_test"]
        for expected in test["exp_alerts"]
        if "exp_annotations" in expected
    }
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group in content["groups"]:
        for rule in group["rules"]:
            summary = rule.pop("annotations")["summary"]
            if rule["alert"] in checked:
                rule["annotations"] = {"summary": summary}
    return dict(content)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["alert_rule_test"][-1]["alertname"])
def test_alerts_fire_when_they_should_and_not_otherwise(
    scenario: dict[str, Any], tmp_path: Path
) -> None:
    rules_file = only_summaries(ALERTS, scenario)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules_file), encoding="utf-8")
    suite = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": [scenario]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(suite), encoding="utf-8")
    done = run("test", "rules", str(tmp_path / "test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
