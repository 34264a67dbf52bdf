"""Helpers the test tiers share: waiting for conditions, listening to events, running apps."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from shared.auth import MongoKeyStore, Role, key_document
from shared.contracts import utcnow
from shared.crypto import FieldCipher
from shared.devstack import DevStack
from shared.embedded import free_port
from shared.storage import Document
from shared.topology import EVENTS, INTAKE_REPORTS

T = TypeVar("T")
PERSON_SECRET = b"development-only-not-a-secret"  # the development default of PERSON_KEY_SECRET
DEV_CIPHER = FieldCipher("development-only-not-a-secret")  # the default of PII_ENCRYPTION_KEY


def free_ports(*services: str) -> dict[str, int]:
    return {service: free_port() for service in services}


@contextmanager
def started_stack(
    var: Path, registry: Mapping[str, Any], ports: Mapping[str, int], env: Mapping[str, str]
) -> Iterator[DevStack]:
    """The services on `ports` as OS processes, as `make run` starts them, over `registry`;
    `env` names the broker and the database. Stopped on the way out."""
    registry_file = var / "registry.json"
    registry_file.write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    stack = DevStack(
        var_dir=var, registry_file=registry_file, ports=ports, env={"CARERELAY_ENV": "test", **env}
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 15.0, interval: float = 0.05
) -> T:
    """Poll until `probe` returns something truthy; fail with the last value otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)


class EventListener:
    """Collects every event published on the events exchange with the given routing keys."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self._channel = channel
        self.received: list[tuple[str, dict[str, Any], aio_pika.abc.AbstractIncomingMessage]] = []
        self._arrived = asyncio.Event()

    async def bind(self, *routing_keys: str) -> None:
        exchange = await self._channel.declare_exchange(
            EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.received.append((message.routing_key or "", json.loads(message.body), message))
        self._arrived.set()

    def of(self, routing_key: str, case_id: str | None = None) -> list[dict[str, Any]]:
        return [
            body
            for key, body, _ in self.received
            if key == routing_key and (case_id is None or body.get("case_id") == case_id)
        ]

    async def wait(
        self, routing_key: str, case_id: str | None = None, count: int = 1, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            found = self.of(routing_key, case_id)
            return found if len(found) >= count else None

        return await wait_for(enough, timeout)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (real broker and database) and talk to it over ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def service_env(amqp_url: str, mongo_url: str, db_name: str) -> dict[str, str]:
    return {
        "AMQP_URL": amqp_url,
        "MONGO_URL": mongo_url,
        "MONGO_DB": db_name,
        "CARERELAY_ENV": "test",
        "LOG_LEVEL": "WARNING",
    }


class RecordingServer:
    """A real HTTP server on 127.0.0.1 standing in for an outside service (WeChat Work, an SMS
    gateway, a hotline's callback endpoint). It records every request and answers as told."""

    def __init__(
        self, answer: Callable[[Recorded], tuple[int, dict[str, Any]]] | None = None
    ) -> None:
        self.requests: list[Recorded] = []
        self._answer = answer or (lambda _: (200, {"errcode": 0, "errmsg": "ok"}))
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            chunk = await receive()
            body += chunk.get("body", b"")
            if not chunk.get("more_body"):
                break
        recorded = Recorded(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode(),
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
        )
        self.requests.append(recorded)
        status, payload = self._answer(recorded)
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def __aenter__(self) -> RecordingServer:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            interface="asgi3",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        await wait_for(self._started, timeout=10)
        return self

    async def _started(self) -> bool:
        return self._server is not None and self._server.started

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def publish_reports(amqp_url: str, reports: Sequence[dict[str, Any]]) -> None:
    """Publish hardship reports the way a hotline on AMQP does (`report.submitted`)."""
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for body in reports:
            message = aio_pika.Message(
                json.dumps(body, ensure_ascii=False).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key=INTAKE_REPORTS.routing_key)


async def issue_key(
    db: AsyncDatabase[Document],
    role: Role = Role.hotline,
    source: str | None = "12345-wuhan",
    divisions: tuple[str, ...] = ("420100",),
    require_signature: bool = False,
) -> tuple[str, str | None]:
    """Create an API key as `carerelay keys create` does: (token, signing secret)."""
    document, issued = key_document(
        name=f"test {role.value}",
        role=role,
        source=source,
        divisions=divisions,
        now=utcnow(),
        cipher=DEV_CIPHER,
        require_signature=require_signature,
    )
    assert await MongoKeyStore(db).add(document)
    return issued.token, issued.signing_secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Mailbox:
    """An aiosmtpd handler keeping every message it receives, and whether it came over TLS."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.over_tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.messages.append(parsed)
        self.over_tls.append(session.ssl is not None)
        return "250 OK"


def self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway certificate for `host` (an IP address), made with `cryptography`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
