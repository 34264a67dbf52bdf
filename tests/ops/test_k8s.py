"""The Kubernetes manifests: valid against the Kubernetes schemas (offline, strict), and
consistent with the code: probes, ports, secrets, and autoscaling on the queues each service
really consumes."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI
from pydantic import SecretStr

from services.intake.app import build_app as build_intake
from services.intake.settings import IntakeSettings
from services.matching.app import build_app as build_matching
from services.matching.settings import MatchingSettings
from services.notify.app import build_app as build_notify
from services.notify.settings import NotifySettings
from shared.settings import DEV_SECRET, CommonSettings
from tests.ops.catalogue import ROOT

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
NOT_IN_KUBERNETES_SCHEMAS = {"ScaledObject", "TriggerAuthentication", "Kustomization"}  # CRDs
SERVICES = ("intake", "matching", "notify")
SETTINGS: dict[str, type[CommonSettings]] = {
    "intake": IntakeSettings,
    "matching": MatchingSettings,
    "notify": NotifySettings,
}
PORTS = {"intake": 8000, "matching": 8001, "notify": 8002}


@cache
def documents() -> tuple[tuple[Path, dict[str, Any]], ...]:
    return tuple(
        (path, doc)
        for path in sorted(K8S.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    )


def of_kind(kind: str, directory: Path = K8S) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for path, doc in documents()
        if doc["kind"] == kind and path.parent == directory
    }


@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in documents() if doc["kind"] not in NOT_IN_KUBERNETES_SCHEMAS],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_manifest_validates_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_caught() -> None:
    deployment = yaml.safe_load(yaml.safe_dump(of_kind("Deployment")["intake"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_probes_limits_and_a_non_root_security_context(service: str) -> None:
    pod = of_kind("Deployment")[service]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["command"] == ["python", "-m", f"services.{service}"]
    [port] = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", PORTS[service])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the image's user
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORTS[service])


@pytest.mark.parametrize("service", SERVICES)
def test_service_and_disruption_budget_select_the_deployments_pods(service: str) -> None:
    pods = of_kind("Deployment")[service]["spec"]["template"]["metadata"]["labels"]
    selector = of_kind("Service")[service]["spec"]["selector"]
    budget = of_kind("PodDisruptionBudget")[service]["spec"]
    assert selector.items() <= pods.items()
    assert budget["selector"]["matchLabels"].items() <= pods.items()
    assert budget["minAvailable"] == 1
    assert of_kind("Deployment")[service]["spec"]["replicas"] >= 2


@pytest.mark.parametrize("service", SERVICES)
def test_every_secret_the_service_reads_comes_from_a_kubernetes_secret(service: str) -> None:
    [container] = of_kind("Deployment")[service]["spec"]["template"]["spec"]["containers"]
    from_secrets = {
        env["name"] for env in container["env"] if "secretKeyRef" in env.get("valueFrom", {})
    }
    needed = {
        str(field.validation_alias)
        for field in SETTINGS[service].model_fields.values()
        if field.annotation is SecretStr and field.default == SecretStr(DEV_SECRET)
    }
    assert needed | {"AMQP_URL", "MONGO_URL"} <= from_secrets


def consumed_queues(service: str) -> set[str]:
    """The durable work queues the service's broker subscribes to, from the code itself."""
    builders: dict[str, Callable[[], FastAPI]] = {
        "intake": build_intake,
        "matching": build_matching,
        "notify": build_notify,
    }
    broker = builders[service]().state.runtime.broker
    return {
        subscriber.queue.name
        for subscriber in broker.subscribers
        if subscriber.queue.durable and not subscriber.queue.exclusive
    }


@pytest.mark.parametrize("service", SERVICES)
def test_keda_scales_each_service_on_every_queue_it_consumes(service: str) -> None:
    scaled = of_kind("ScaledObject", K8S / "keda")[service]["spec"]
    assert scaled["scaleTargetRef"]["name"] == service
    assert scaled["minReplicaCount"] >= 2
    queues = {t["metadata"]["queueName"] for t in scaled["triggers"] if t["type"] == "rabbitmq"}
    assert queues == consumed_queues(service)
    auth = of_kind("TriggerAuthentication", K8S / "keda")["rabbitmq-connection"]["spec"]
    assert auth["secretTargetRef"] == [
        {"parameter": "host", "name": "carerelay-secrets", "key": "AMQP_URL"}
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_the_cpu_alternative_targets_the_same_deployment(service: str) -> None:
    hpa = of_kind("HorizontalPodAutoscaler", K8S / "hpa")[service]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_kustomization_applies_every_manifest_but_the_cpu_alternative() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {
        str(path.relative_to(K8S))
        for path in K8S.rglob("*.yaml")
        if path.name != "kustomization.yaml" and path.parent.name != "hpa"
    }
    assert listed == on_disk
