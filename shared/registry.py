"""The helper registry: volunteers, cadres, community workers, agencies and duty desks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from faststream.rabbit import RabbitBroker
from pydantic import ValidationError
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import HelperRecord, Registry, RegistryChanged
from shared.people import person_key
from shared.storage import HELPERS, PEOPLE, Document
from shared.topology import EVENTS, REGISTRY_CHANGED_KEY

BATCH = 500


async def upsert_helpers(
    db: AsyncDatabase[Document],
    records: Sequence[HelperRecord],
    now: datetime,
    person_secret: bytes,
) -> int:
    """Write records by id. Re-loading keeps how many open cases each helper holds. A paired
    cadre's people are stored only as keyed hashes, on the people they are paired with."""
    pairings = [
        UpdateOne(
            {"_id": person_key(phone, person_secret)},
            {"$addToSet": {"paired_cadre_ids": r.id}},
            upsert=True,
        )
        for r in records
        for phone in r.paired_with
    ]
    for start in range(0, len(pairings), BATCH):
        await db[PEOPLE].bulk_write(pairings[start : start + BATCH], ordered=False)
    for start in range(0, len(records), BATCH):
        await db[HELPERS].bulk_write(
            [
                UpdateOne(
                    {"_id": r.id},
                    {
                        "$set": {
                            **r.model_dump(mode="json", exclude={"id", "paired_with"}),
                            "updated_at": now,
                        },
                        "$setOnInsert": {"load": 0, "case_ids": [], "offers": 0, "accepts": 0},
                    },
                    upsert=True,
                )
                for r in records[start : start + BATCH]
            ],
            ordered=False,
        )
    return len(records)


async def load_helpers(db: AsyncDatabase[Document]) -> list[Document]:
    return [doc async for doc in db[HELPERS].find({}, {"case_ids": 0})]


async def announce_change(broker: RabbitBroker, helper_ids: list[str]) -> None:
    """Tell every matching replica to refresh its in-process index (a signal, not a record)."""
    await broker.publish(
        RegistryChanged(helper_ids=helper_ids).model_dump(mode="json"),
        exchange=EVENTS,
        routing_key=REGISTRY_CHANGED_KEY,
        mandatory=False,
    )


def read_registry_file(path: Path) -> Registry:
    """Parse a registry file; a bad entry is reported as e.g. `helpers[3].lat: ...`."""
    try:
        return Registry.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc
    except ValidationError as exc:
        problems = [f"{_path(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ValueError(f"{path}: " + "; ".join(problems)) from exc


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
