"""Fixtures that start the real servers: a RabbitMQ virtual host of our own on the machine's
broker, and a SecantusDB MongoDB-wire server over TCP."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aio_pika
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.embedded import EmbeddedMongo, free_port
from shared.storage import Document
from tests.support import EventListener


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)  # noqa: S603, S607


@contextmanager
def virtual_host() -> Iterator[str]:
    """A virtual host of our own on the machine's broker, deleted afterwards."""
    vhost = f"carerelay-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    """A fresh virtual host per test module, so no test sees another module's messages."""
    with virtual_host() as url:
        yield url


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    with EmbeddedMongo(free_port()) as server:
        yield server.url


@pytest.fixture
def db_name() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def db(mongo_url: str, db_name: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client[db_name]
    await client.drop_database(db_name)
    await client.close()


@pytest.fixture
async def amqp(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(amqp_url)
    yield connection
    await connection.close()


@pytest.fixture
async def listener(amqp: aio_pika.abc.AbstractRobustConnection) -> EventListener:
    return EventListener(await amqp.channel())
