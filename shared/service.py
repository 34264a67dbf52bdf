"""What every service's `build_app()` shares: lifecycle, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.rabbit import RabbitBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.crypto import FieldCipher
from shared.messaging import build_broker
from shared.settings import CommonSettings
from shared.storage import Document, ensure_indexes, mongo_client, ping
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
        self.broker = build_broker(self.settings, self.registry, self.name)
        self.mongo = mongo_client(self.settings)

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


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )


def create_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
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
        try:
            yield
        finally:
            # Stop taking messages and let those in flight finish (FastStream's graceful
            # timeout) while channels, loops and the database are still there for them.
            await runtime.broker.stop()
            for hook in on_shutdown:
                await hook()
            await runtime.mongo.close()

    app = FastAPI(title=title, description=description, version="1", lifespan=lifespan)
    app.state.runtime = runtime

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

    return app


class Periodic:
    """A background loop owned by the app's lifespan (relays, sweepers, refreshes)."""

    def __init__(self, name: str, interval_s: float, work: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._work = work
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
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
