"""A real Prometheus server (Debian's) runs the repository's configuration and alert rules,
pointed at the three services running as OS processes; a domain metric produced over AMQP is
read back through Prometheus's HTTP API."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import aio_pika
import httpx
import pytest
import yaml

from shared.contracts import HardshipReport
from shared.devstack import DevStack
from shared.embedded import free_port, wait_for_port
from shared.topology import EVENTS, INTAKE_REPORTS
from tests.ops.catalogue import PROMETHEUS_DIR, debian_tool
from tests.ops.test_dashboard import as_prometheus_sees_it, expressions
from tests.support import free_ports, started_stack, wait_for

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
SERVICES = ("intake", "matching", "notify")
REGISTRY = {
    "helpers": [
        {
            "id": "duty-desk-wuhan",
            "kind": "duty_desk",
            "name": "武汉市残联值班室",
            "divisions": ["420100"],
            "capacity": 100000,
        }
    ]
}


@pytest.fixture(scope="module")
def stack(
    amqp_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    with started_stack(
        tmp_path_factory.mktemp("var"),
        REGISTRY,
        free_ports(*SERVICES),
        {
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "MONGO_DB": f"ops_{uuid.uuid4().hex[:8]}",
        },
    ) as stack:
        yield stack


def config_for(stack: DevStack) -> dict[str, Any]:
    """The repository's prometheus.yml with the services' DNS names swapped for the ports they
    run on here, a one-second scrape, and RabbitMQ's jobs left out (no plugin on this broker)."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    jobs = []
    for job in config["scrape_configs"]:
        if not job["job_name"].startswith("carerelay-"):
            continue
        [dns] = job.pop("dns_sd_configs")
        [service] = dns["names"]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{stack.ports[service]}"]}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


@pytest.fixture(scope="module")
def prometheus(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prometheus")
    (home / "prometheus.yml").write_text(yaml.safe_dump(config_for(stack)), encoding="utf-8")
    port = free_port()
    with open(home / "prometheus.log", "wb") as log:
        server = subprocess.Popen(  # noqa: S603 - Debian's prometheus, our own config
            [
                debian_tool("prometheus"),
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port("127.0.0.1", port, 60, server)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.fixture
async def api(prometheus: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{prometheus}/api/v1", timeout=10) as client:
        await wait_for(lambda: ready(prometheus), timeout=60)
        yield client


async def ready(prometheus: str) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(f"{prometheus}/-/ready")).status_code == 200
        except httpx.HTTPError:
            return False


async def query(api: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    answer = (await api.get("/query", params={"query": promql})).json()
    assert answer["status"] == "success", (promql, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def publish_reports(amqp_url: str, bodies: list[dict[str, Any]]) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS.name)
        for body in bodies:
            await exchange.publish(
                aio_pika.Message(
                    json.dumps(body).encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=INTAKE_REPORTS.routing_key,
            )


async def test_prometheus_scrapes_all_three_services(api: httpx.AsyncClient) -> None:
    async def all_up() -> list[dict[str, Any]] | None:
        targets = (await api.get("/targets")).json()["data"]["activeTargets"]
        up = [t for t in targets if t["health"] == "up"]
        return targets if len(up) == len(SERVICES) == len(targets) else None

    targets = await wait_for(all_up, timeout=60)
    assert {t["labels"]["service"] for t in targets} == set(SERVICES)
    assert {t["labels"]["job"] for t in targets} == {f"carerelay-{s}" for s in SERVICES}
    assert {r["metric"]["service"] for r in await query(api, "up == 1")} == set(SERVICES)


async def test_a_report_counted_by_intake_reads_back_through_prometheus(
    api: httpx.AsyncClient, amqp_url: str
) -> None:
    source = f"ops-test-{uuid.uuid4().hex[:8]}"
    bodies = [
        copy.deepcopy(EXAMPLE) | {"source": source, "external_id": f"P-{i}"} for i in range(3)
    ]
    await publish_reports(amqp_url, [*bodies, bodies[0]])  # the last one is a duplicate

    async def counted() -> dict[str, float] | None:
        promql = f'sum by (result) (carerelay_intake_reports_total{{source="{source}"}})'
        rows = await query(api, promql)
        found = {row["metric"]["result"]: float(row["value"][1]) for row in rows}
        return found if sum(found.values()) >= 4 else None

    assert await wait_for(counted, timeout=60) == {"accepted": 3.0, "duplicate": 1.0}
    [row] = await query(
        api, f'carerelay_intake_reports_total{{source="{source}",result="accepted"}}'
    )
    assert (row["metric"]["need"], row["metric"]["service"]) == ("medicine", "intake")


async def test_the_alert_rules_load_and_evaluate_on_a_real_server(api: httpx.AsyncClient) -> None:
    async def all_scraped() -> datetime | None:
        targets = (await api.get("/targets")).json()["data"]["activeTargets"]
        up = [t for t in targets if t["health"] == "up"]
        if not targets or len(up) < len(targets):
            return None
        return max(datetime.fromisoformat(t["lastScrape"]) for t in up)

    # An evaluation before the first scrapes sees no replica at all and is rightly pending.
    since = await wait_for(all_scraped, timeout=60)

    async def evaluated() -> list[dict[str, Any]] | None:
        groups = (await api.get("/rules")).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = all(datetime.fromisoformat(r["lastEvaluation"]) > since for r in rules)
        return rules if rules and done else None

    rules = await wait_for(evaluated, timeout=60)
    expected = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    assert len(rules) == sum(len(group["rules"]) for group in expected)
    assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]
    firing = {r["name"] for r in rules if r["state"] != "inactive"}
    assert "ServiceDown" not in firing and "NoReplicaServing" not in firing


async def test_every_dashboard_query_runs_on_the_real_server(api: httpx.AsyncClient) -> None:
    for expr in expressions():
        await query(api, as_prometheus_sees_it(expr))  # each one asserts success
    [replicas] = [e for e in expressions() if e.startswith("sum by (service) (up")]

    async def three() -> list[dict[str, Any]] | None:
        rows = await query(api, replicas)
        return rows if len(rows) == len(SERVICES) else None

    assert {row["metric"]["service"] for row in await wait_for(three, timeout=30)} == set(SERVICES)
