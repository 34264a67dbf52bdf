"""The database ceiling: how many reports a second SecantusDB could carry if writing were all
there is to a report.

On a fresh in-memory SecantusDB (its own process, as in the pipeline run), writers shaped like
the services' clients (one client per service, as many writers in flight as the pipeline had)
do what a report's hot path does to the database and nothing else: insert one case document
(built by intake's own code from a generated report), then update it by `_id` until the report's
measured round trips are spent. Plain single-document writes, no Python service around them.

    ceiling reports/s = writes/s / round trips per report
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from pymongo import AsyncMongoClient

from bench.loadgen import reports
from services.intake.domain import case_id_for, open_case
from shared.contracts import HardshipReport, utcnow
from shared.crypto import FieldCipher
from shared.embedded import EmbeddedMongo, free_port
from shared.settings import DEV_SECRET
from shared.storage import Document


def case_documents(n: int) -> list[Document]:
    """Case documents exactly as intake first stores them (personal data sealed)."""
    cipher, key = FieldCipher(DEV_SECRET), DEV_SECRET.encode()
    out = []
    for body in reports(np.random.default_rng(99), n, f"C-{uuid.uuid4().hex[:6]}"):
        report = HardshipReport.model_validate(body)
        case_id = case_id_for(report.source, report.external_id, key)
        out.append(open_case(report, case_id, utcnow(), cipher, key)[0])
    return out


async def measure(
    url: str,
    round_trips: float,
    writers: Sequence[int] = (2, 2, 2),
    duration_s: float = 10.0,
) -> dict[str, Any]:
    """`writers[i]` writers in flight on client i; each writes one simulated report after
    another. Returns writes/s and the ceiling in reports/s."""
    per_report = max(1, round(round_trips))
    templates = case_documents(200)
    clients: list[AsyncMongoClient[Document]] = [
        AsyncMongoClient(url, tz_aware=True) for _ in writers
    ]
    writes = 0
    try:
        for client in clients:  # connect and create the collection before the clock starts
            await client["ceiling"]["cases"].insert_one({"_id": uuid.uuid4().hex})
        deadline = time.monotonic() + duration_s

        async def writer(client: AsyncMongoClient[Document], n: int) -> None:
            nonlocal writes
            cases = client["ceiling"]["cases"]
            i = n
            while time.monotonic() < deadline:
                doc = {**templates[i % len(templates)], "_id": uuid.uuid4().hex}
                await cases.insert_one(doc)
                writes += 1
                for step in range(per_report - 1):
                    await cases.update_one(
                        {"_id": doc["_id"], "version": step + 1},
                        {"$set": {"status": f"step{step}", "updated_at": utcnow()},
                         "$inc": {"version": 1}},
                    )  # fmt: skip
                    writes += 1
                i += 7

        started = time.monotonic()
        await asyncio.gather(
            *(
                writer(client, n)
                for client, count in zip(clients, writers, strict=True)
                for n in range(count)
            )
        )
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            await client.close()
    rate = writes / elapsed
    return {
        "writes_per_s": round(rate),
        "round_trips_per_report": round_trips,
        "writers_per_client": list(writers),
        "per_s": round(rate / round_trips, 1),
    }


async def run_fresh(round_trips: float, writers: Sequence[int] = (2, 2, 2)) -> dict[str, Any]:
    """`measure` against a fresh SecantusDB started as the pipeline's was (in memory)."""
    with EmbeddedMongo(free_port(), ":memory:") as server:
        return await measure(server.url, round_trips, writers)
