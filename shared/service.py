"""What every service's `build_app()` shares: lifecycle, health, readiness, metrics, tracing,
logs and the AsyncAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.rabbit import RabbitBroker
from faststream.specification import AsyncAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import logging_json
from shared.auth import Authenticator, MongoKeyStore
from shared.crypto import FieldCipher
from shared.guard import Guard
from shared.http import BodyLimit
from shared.messaging import build_broker
from shared.settings import CommonSettings
from shared.storage import Document, command_origin, ensure_indexes, mongo_client, ping
from shared.telemetry import configure_tracing
from shared.topology import declare_topology

Hook = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    """The connections one service process owns. Created without I/O; opened by the lifespan."""

    name: str
    settings: CommonSettings
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    broker: RabbitBroker = field(init=False)
    mongo: AsyncMongoClient[Document] = field(init=False)

    def __post_init__(self) -> None:
        configure_tracing(self.name)
        self.broker = build_broker(self.settings, self.registry, self.name)
        self.mongo = mongo_client(self.settings, self.registry)

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.mongo[self.settings.mongo_db]

    @property
    def cipher(self) -> FieldCipher:
        return FieldCipher(self.settings.pii_key.get_secret_value())

    @property
    def hash_key(self) -> bytes:
        """Key of the keyed hashes that link a person's cases without naming them."""
        return self.settings.person_key_secret.get_secret_value().encode()


def configure_logging(level: str, service: str = "carerelay") -> None:
    """One JSON object a line on stderr, with case and trace ids; personal data masked."""
    logging_json.configure(level, service)


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """Request duration by route template (never the raw path: it holds case ids), method and
    status class."""

    def __init__(self, app: ASGIApp, duration: Histogram) -> None:
        self.app = app
        self.duration = duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router records the matched route in the (shared) scope.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            self.duration.labels(route, method, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )


def http_duration(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "carerelay_http_request_duration_seconds",
        "HTTP requests served, by route template, method and status class",
        ["route", "method", "status"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=registry,
    )


# Per-replica queues get random names; the document names the pattern instead.
_REPLICA_QUEUE = re.compile(r"\b(matching|notify)\.registry\.[0-9a-f]+")


def asyncapi_document(app: FastAPI) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of a service's broker: what it consumes and publishes."""
    runtime: Runtime = app.state.runtime
    spec = AsyncAPI(
        runtime.broker,
        title=app.title,
        version=app.version,
        description=app.description,
        schema_version="3.0.0",
    ).to_specification()
    text = _REPLICA_QUEUE.sub(r"\1.registry.{replica}", spec.to_json())
    document: dict[str, Any] = json.loads(text)
    return document


def create_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    loops: Sequence[Periodic] = (),
) -> FastAPI:
    """A FastAPI app that opens the broker and database on startup and closes them on shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ensure_indexes(runtime.db)
        await runtime.broker.connect()
        await declare_topology(runtime.broker, runtime.settings.queue_options)
        for hook in on_startup:  # before consuming: e.g. matching loads its helper index
            await hook()
        await runtime.broker.start()
        for loop in loops:
            await loop.start()
        try:
            yield
        finally:
            # No new work first (background loops), then stop taking messages and let those
            # in flight finish (FastStream's graceful timeout) while channels and the database
            # are still there for them; then close what they used.
            for loop in loops:
                await loop.stop()
            await runtime.broker.stop()
            for hook in on_shutdown:
                await hook()
            await runtime.mongo.close()

    app = FastAPI(title=title, description=description, version="1", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.guard = Guard(
        Authenticator(MongoKeyStore(runtime.db), runtime.cipher, runtime.settings.key_cache_s),
        runtime.settings.rate_limit,
        runtime.settings.signature_window_s,
    )
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(HttpMetrics, duration=http_duration(runtime.registry))
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"]
    )

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Broker and database are reachable")
    async def readyz() -> JSONResponse:
        checks = {
            "broker": await runtime.broker.ping(timeout=2.0),
            "database": await ping(runtime.db),
        }
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", tags=["operations"], summary="AsyncAPI document of the events")
    async def asyncapi() -> JSONResponse:
        return JSONResponse(asyncapi_document(app))

    return app


class Periodic:
    """A background loop owned by the app's lifespan (relays, sweepers, refreshes)."""

    def __init__(self, name: str, interval_s: float, work: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._work = work
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        command_origin.set("periodic")
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._work()
            except Exception:  # a failed pass is logged and retried on the next tick
                logging.getLogger("carerelay").exception("%s pass failed", self._name)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
