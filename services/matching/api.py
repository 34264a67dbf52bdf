"""The registry API: load and list helpers (volunteers, cadres, agencies, duty desks)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from faststream.rabbit import RabbitBroker
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import HelperKind, Registry, utcnow
from shared.registry import announce_change, load_helpers, upsert_helpers
from shared.storage import Document


class RegistryWritten(BaseModel):
    written: int


class HelperSummary(BaseModel):
    id: str
    kind: HelperKind
    name: str
    active: bool
    load: int
    capacity: int
    skills: list[str]
    needs: list[str]
    divisions: list[str]


def router(db: AsyncDatabase[Document], broker: RabbitBroker, person_secret: bytes) -> APIRouter:
    api = APIRouter(prefix="/v1/registry", tags=["registry"])

    @api.put(
        "/helpers",
        response_model=RegistryWritten,
        summary="Add or update helpers; open-case counts are kept",
    )
    async def put_helpers(registry: Registry) -> RegistryWritten:
        written = await upsert_helpers(db, registry.helpers, utcnow(), person_secret)
        await announce_change(broker, [h.id for h in registry.helpers])
        return RegistryWritten(written=written)

    @api.get("/helpers", response_model=list[HelperSummary], summary="Helpers, without contacts")
    async def list_helpers(
        kind: Annotated[HelperKind | None, Query()] = None,
    ) -> list[HelperSummary]:
        return [
            HelperSummary(
                id=d["_id"],
                kind=d["kind"],
                name=d["name"],
                active=d.get("active", True),
                load=d.get("load", 0),
                capacity=d.get("capacity", 0),
                skills=d.get("skills", []),
                needs=d.get("needs", []),
                divisions=d.get("divisions", []),
            )
            for d in await load_helpers(db)
            if kind is None or d["kind"] == kind.value
        ]

    return api
