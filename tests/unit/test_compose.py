"""The production compose file: valid, complete, and without working default secrets."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from services.intake.settings import IntakeSettings
from services.matching.settings import MatchingSettings
from services.notify.settings import NotifySettings
from shared.settings import DEV_SECRET, CommonSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("intake", "matching", "notify")
SETTINGS: dict[str, type[CommonSettings]] = {
    "intake": IntakeSettings,
    "matching": MatchingSettings,
    "notify": NotifySettings,
}
SECRETS = {
    "RABBITMQ_USER": "carerelay",
    "RABBITMQ_PASS": "s3cret-broker-password",
    "CASE_ID_KEY": "c" * 32,
    "PERSON_KEY_SECRET": "p" * 32,
    "PII_ENCRYPTION_KEY": "e" * 32,
    "OFFER_LINK_KEY": "o" * 32,
    "GRAFANA_ADMIN_PASSWORD": "g" * 16,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing; `make test` installs it (apt)")
        pytest.skip("docker-compose not installed (make test installs it)")
    done = subprocess.run(  # noqa: S603
        [tool, "-f", str(COMPOSE), "config"],
        env={**os.environ, **SECRETS},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = yaml.safe_load(done.stdout)
    return parsed


def test_compose_file_is_valid_and_has_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {
        "rabbitmq",
        "mongo",
        *APP_SERVICES,
        "prometheus",
        "grafana",
    }


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed")
    env = {k: v for k, v in {**os.environ, **SECRETS}.items() if k != missing}
    done = subprocess.run(  # noqa: S603
        [tool, "-f", str(COMPOSE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0 and missing in done.stderr


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_secret_a_service_reads_comes_from_the_environment(
    compose: dict[str, Any], service: str
) -> None:
    environment = compose["services"][service]["environment"]
    for name, field in SETTINGS[service].model_fields.items():
        if field.annotation is SecretStr and field.default == SecretStr(DEV_SECRET):
            variable = str(field.validation_alias)
            assert environment.get(variable) == SECRETS[variable], (service, name)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_service_accepts_its_compose_environment_in_production(
    compose: dict[str, Any], service: str
) -> None:
    environment = compose["services"][service]["environment"]
    settings = SETTINGS[service](**environment)
    assert settings.environment == "production"


def test_every_container_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        if "demo" not in spec.get("profiles", []):
            assert "healthcheck" in spec, name


def test_prometheus_runs_the_repository_config_and_alert_rules(compose: dict[str, Any]) -> None:
    spec = compose["services"]["prometheus"]
    assert f"{ROOT}/deploy/prometheus:/etc/prometheus:ro" in spec["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in spec["command"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert targets == {"rabbitmq:15692"}
    assert "15692" in compose["services"]["rabbitmq"]["expose"]
    plugins = (ROOT / "deploy" / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_prometheus" in plugins and "rabbitmq_management" in plugins
    discovered = {
        (sd["names"][0], sd["port"])
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
    }
    assert discovered == {("intake", 8000), ("matching", 8001), ("notify", 8002)}


def test_grafana_is_provisioned_with_the_dashboard_and_waits_for_prometheus(
    compose: dict[str, Any],
) -> None:
    spec = compose["services"]["grafana"]
    assert f"{ROOT}/deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in spec["volumes"]
    assert f"{ROOT}/deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in spec["volumes"]
    assert spec["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert spec["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_service_waits_for_healthy_dependencies_and_runs_in_production_mode(
    compose: dict[str, Any], service: str
) -> None:
    spec = compose["services"][service]
    assert spec["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "mongo": {"condition": "service_healthy"},
    }
    assert spec["environment"]["CARERELAY_ENV"] == "production"
    assert spec["build"]["dockerfile"].endswith("deploy/Dockerfile")
    assert spec["command"] == ["python", "-m", f"services.{service}"]
    assert "healthcheck" in spec


@pytest.mark.parametrize("service", ["matching", "notify"])
def test_consumers_publish_no_fixed_host_port_so_they_can_scale(
    compose: dict[str, Any], service: str
) -> None:
    assert "ports" not in compose["services"][service]


def test_mongo_runs_as_a_replica_set(compose: dict[str, Any]) -> None:
    assert "--replSet" in compose["services"]["mongo"]["command"]


def test_no_default_credentials_in_the_file() -> None:
    assert "guest" not in COMPOSE.read_text(encoding="utf-8")


def test_image_runs_as_a_non_root_user_with_locked_dependencies() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "USER 10001" in dockerfile
    assert "uv sync --frozen" in dockerfile
