"""The production compose file: valid, complete, and without working default secrets."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("intake", "matching", "notify")
SECRETS = {"RABBITMQ_USER": "carerelay", "RABBITMQ_PASS": "s3cret", "CASE_ID_KEY": "k" * 32}


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
    assert set(compose["services"]) >= {"rabbitmq", "mongo", *APP_SERVICES}


def test_compose_refuses_to_start_without_secrets() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    done = subprocess.run(  # noqa: S603
        [tool, "-f", str(COMPOSE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0 and "RABBITMQ_USER" in done.stderr


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
