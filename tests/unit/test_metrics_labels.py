"""Metric labels stay bounded: no raw paths, no ids, no unbounded client-chosen values."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.intake.metrics import IntakeMetrics
from shared.service import HttpMetrics, http_duration


def test_hotline_systems_past_the_limit_share_the_other_label() -> None:
    registry = CollectorRegistry()
    metrics = IntakeMetrics.create(registry, source_limit=2)
    for source in ("12345-wuhan", "dpf-jianghan", "made-up-1", "made-up-2", "12345-wuhan"):
        metrics.reports.labels(source, "medicine", "accepted").inc()

    def count(source: str) -> float | None:
        return registry.get_sample_value(
            "carerelay_intake_reports_total",
            {"source": source, "need": "medicine", "result": "accepted"},
        )

    assert (count("12345-wuhan"), count("dpf-jianghan"), count("other")) == (2, 1, 2)
    assert count("made-up-1") is None


async def test_request_duration_is_labelled_by_route_template_not_the_raw_path() -> None:
    registry = CollectorRegistry()
    app = FastAPI()
    app.add_middleware(HttpMetrics, duration=http_duration(registry))

    @app.get("/v1/cases/{case_id}")
    async def case(case_id: str) -> dict[str, str]:
        return {"case_id": case_id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/v1/cases/9f86d081884c7d65")).status_code == 200
        assert (await client.get("/v1/nothing/here")).status_code == 404
        await client.request("BREW", "/v1/cases/abc")

    def count(route: str, method: str, status: str) -> float | None:
        return registry.get_sample_value(
            "carerelay_http_request_duration_seconds_count",
            {"route": route, "method": method, "status": status},
        )

    assert count("/v1/cases/{case_id}", "GET", "2xx") == 1
    assert count("unmatched", "GET", "4xx") == 1
    assert count("/v1/cases/{case_id}", "other", "4xx") == 1
    exposed = {s.labels.get("route") for m in registry.collect() for s in m.samples}
    assert not any(r and "9f86d081884c7d65" in r for r in exposed)
