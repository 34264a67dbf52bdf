"""Tracing with OpenTelemetry: one trace follows a case from the HTTP request to the outreach.

Spans come from FastStream's telemetry middleware (every publish and consume, context carried
in the W3C `traceparent` message header) and from the FastAPI instrumentation; their trace ids
are in every log line. Nothing is exported unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; then spans go over OTLP/HTTP, configured by the
standard `OTEL_*` variables (`OTEL_SDK_DISABLED=true` turns tracing off altogether).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROPAGATOR = TraceContextTextMapPropagator()


def export_configured(environ: Mapping[str, str] = os.environ) -> bool:
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


class RecordWhenExporting(Sampler):
    """Records spans only when they have somewhere to go. Unrecorded spans still get ids, so
    trace ids reach the logs and the message headers at a fraction of the cost of recording
    (bench/relay.py); a trace's children follow its root's decision."""

    def __init__(self) -> None:
        self.recording = False
        self._on, self._off = ParentBased(ALWAYS_ON), ParentBased(ALWAYS_OFF)

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        chosen = self._on if self.recording else self._off
        return chosen.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"RecordWhenExporting(recording={self.recording})"


SAMPLER = RecordWhenExporting()


def record_spans(on: bool = True) -> None:
    """Record spans even without an exporter (a test's in-memory exporter, say)."""
    SAMPLER.recording = on


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ) -> None:
    """Give this process a TracerProvider, once: spans always get ids, so trace ids reach the
    logs and the message headers of every service; they are recorded and exported only when
    an endpoint is set.

    A provider installed earlier (a test's, with an in-memory exporter) is kept.
    """
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    exporting = export_configured(environ)
    record_spans(exporting)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "carerelay"}),
        sampler=SAMPLER,
    )
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def trace_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`), empty outside any span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def continued(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Make the trace context stored in `headers` current, so new spans continue that trace."""
    if not headers:
        yield
        return
    token = context.attach(_PROPAGATOR.extract(dict(headers)))
    try:
        yield
    finally:
        context.detach(token)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span in hex, as tracing back ends show them."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
