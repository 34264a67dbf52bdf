"""One case followed across the three services: a single trace from the HTTP request to the
outreach, and log lines that carry its case id and trace id. The three apps run in this process
against the real RabbitMQ and a real MongoDB-wire server, sharing one TracerProvider."""

from __future__ import annotations

import copy
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import build_app as build_intake
from services.intake.settings import IntakeSettings
from services.matching.app import build_app as build_matching
from services.matching.settings import MatchingSettings
from services.notify.app import build_app as build_notify
from services.notify.settings import NotifySettings
from shared import logging_json
from shared.contracts import HardshipReport, HelperKind, HelperRecord, OutreachSent, utcnow
from shared.outbox import Flush, Outbox, pending
from shared.registry import upsert_helpers
from shared.storage import CASES, Document
from shared.telemetry import configure_tracing, record_spans, trace_headers
from tests.support import (
    PERSON_SECRET,
    EventListener,
    RecordingServer,
    bearer,
    issue_key,
    running,
    service_env,
    wait_for,
)

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
VOLUNTEER = HelperRecord(
    id="vol-trace",
    kind=HelperKind.volunteer,
    name="志愿者甲",
    lat=EXAMPLE["location"]["lat"] + 0.005,
    lon=EXAMPLE["location"]["lon"],
    radius_km=5,
    capacity=5,
)


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    configure_tracing("carerelay-tests")
    record_spans()  # as if exporting: the in-memory exporter below is where they go
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # the provider outlives this module; later spans are dropped


@pytest.fixture
async def system(
    amqp_url: str,
    mongo_url: str,
    db_name: str,
    db: AsyncDatabase[Document],
    listener: EventListener,
    spans: InMemorySpanExporter,
) -> AsyncIterator[tuple[httpx.AsyncClient, io.StringIO]]:
    await listener.bind("outreach.*")
    await upsert_helpers(db, [VOLUNTEER], utcnow(), PERSON_SECRET)
    env = service_env(amqp_url, mongo_url, db_name)
    async with AsyncExitStack() as stack:
        wechat = await stack.enter_async_context(RecordingServer())
        apps = [
            build_intake(IntakeSettings(**env)),  # type: ignore[arg-type]
            build_matching(MatchingSettings(**env)),  # type: ignore[arg-type]
            build_notify(
                NotifySettings(**env, WECHAT_WORK_WEBHOOK_URL=f"{wechat.url}/send?key=t")  # type: ignore[arg-type]
            ),
        ]
        logs = io.StringIO()
        logging_json.configure("INFO", "tests", stream=logs)  # after build_app configured its own
        intake, *_ = [await stack.enter_async_context(running(app)) for app in apps]
        token, _ = await issue_key(db)
        intake.headers.update(bearer(token))
        yield intake, logs


def by_name(found: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in found if s.name == name]
    return span


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


async def test_one_case_is_one_trace_from_the_http_request_to_the_outreach(
    system: tuple[httpx.AsyncClient, io.StringIO],
    listener: EventListener,
    spans: InMemorySpanExporter,
) -> None:
    intake, _ = system
    body = copy.deepcopy(EXAMPLE) | {"external_id": uuid.uuid4().hex}
    case_id = (await intake.post("/v1/reports", json=body)).json()["case_id"]
    await listener.wait("outreach.sent", case_id)

    def trace_of_case() -> list[ReadableSpan]:
        finished = list(spans.get_finished_spans())
        roots = [
            s
            for s in finished
            if s.name == "POST /v1/reports" and s.kind == trace.SpanKind.SERVER and not s.parent
        ]
        ids = {s.context.trace_id for s in roots}
        return [s for s in finished if s.context.trace_id in ids]

    async def whole_trace() -> list[ReadableSpan] | None:
        found = trace_of_case()
        names = {s.name for s in found}
        return found if "carerelay.events.outreach.sent publish" in names else None

    found = await wait_for(whole_trace)
    assert len({s.context.trace_id for s in found}) == 1, "exactly this one case's trace"
    request = by_name(found, "POST /v1/reports")
    reported = by_name(found, "carerelay.events.hardship.reported publish")  # intake
    # Two consumers: matching decides, notify tells the hotline the report was received.
    processed = [s for s in found if s.name == "carerelay.events.hardship.reported process"]
    assert len(processed) == 2
    created = by_name(found, "carerelay.events.case.assigned create")
    [matched] = [s for s in processed if s.context.span_id == parent_of(created)]
    assigned = by_name(found, "carerelay.events.case.assigned publish")  # matching
    notified = by_name(found, "carerelay.events.case.assigned process")  # notify
    by_name(found, "carerelay.events.outreach.sent publish")  # notify
    assert request.context.trace_id == matched.context.trace_id == notified.context.trace_id
    # The context crossed the broker in the message headers: each consumer is a child of the
    # producer's "create" span, the parent of its "publish" span.
    assert all(parent_of(consumer) == parent_of(reported) is not None for consumer in processed)
    assert parent_of(notified) == parent_of(assigned) is not None
    for consumed in (matched, notified):
        assert consumed.attributes is not None
        assert consumed.attributes["carerelay.case_id"] == case_id
    # On the wire: the W3C traceparent header of the last event names the same trace.
    [headers] = [m.headers for _, body, m in listener.received if body["case_id"] == case_id]
    assert str(headers["traceparent"]).split("-")[1] == format(request.context.trace_id, "032x")


async def test_log_lines_carry_case_id_and_trace_id(
    system: tuple[httpx.AsyncClient, io.StringIO], listener: EventListener
) -> None:
    intake, logs = system
    body = copy.deepcopy(EXAMPLE) | {"external_id": uuid.uuid4().hex}
    case_id = (await intake.post("/v1/reports", json=body)).json()["case_id"]
    await listener.wait("outreach.sent", case_id)

    async def line_of_case() -> dict[str, Any] | None:
        lines = [json.loads(line) for line in logs.getvalue().splitlines()]
        mine = [line for line in lines if line.get("case_id") == case_id and line["trace_id"]]
        return mine[0] if mine else None

    line = await wait_for(line_of_case)
    assert len(line["trace_id"]) == 32 and int(line["trace_id"], 16)
    assert {"time", "level", "logger", "message", "service"} <= line.keys()
    text = logs.getvalue()
    for secret in (EXAMPLE["person"]["name"], EXAMPLE["person"]["phone"]):
        assert secret not in text


async def test_a_relayed_event_continues_the_trace_it_was_stored_in(
    db: AsyncDatabase[Document], spans: InMemorySpanExporter
) -> None:
    published: list[dict[str, str]] = []

    async def publish(_: str, __: dict[str, Any]) -> None:
        published.append(trace_headers())

    event = OutreachSent(case_id="c-relay", channel="email", purpose="p", recipient_kind="helper")
    with trace.get_tracer("tests").start_as_current_span("state change") as span:
        await db[CASES].insert_one({"_id": "c-relay", **pending([event], utcnow())})
    assert not trace_headers(), "the relay runs outside any request"
    outbox = Outbox(db[CASES], publish)
    assert (await outbox.relay(older_than=utcnow() + timedelta(seconds=1)))[Flush.published] == 1
    [headers] = published
    assert headers["traceparent"].split("-")[1] == format(span.get_span_context().trace_id, "032x")
