"""Matching's HTTP API: the helper registry, and the offer links helpers open from an SMS."""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from faststream.rabbit import RabbitBroker
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from shared.audit import AuditLog
from shared.auth import Role
from shared.contracts import (
    HelperKind,
    OfferAnswer,
    OfferResponse,
    Registry,
    Resolution,
    ResolveCase,
    Resolver,
    utcnow,
)
from shared.guard import require
from shared.labels import district_name, labels
from shared.registry import announce_change, load_helpers, upsert_helpers
from shared.storage import Document

from .lifecycle import Answer, CaseState
from .links import OfferLinks, OfferRef
from .repository import CaseStore
from .usecases import Matching


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


def registry_router(
    db: AsyncDatabase[Document], broker: RabbitBroker, person_secret: bytes
) -> APIRouter:
    api = APIRouter(prefix="/v1/registry", tags=["registry"])

    @api.put(
        "/helpers",
        response_model=RegistryWritten,
        summary="Add or update helpers; open-case counts are kept (an admin key)",
        dependencies=[Depends(require(Role.admin))],
    )
    async def put_helpers(registry: Registry) -> RegistryWritten:
        written = await upsert_helpers(db, registry.helpers, utcnow(), person_secret)
        await announce_change(broker, [h.id for h in registry.helpers])
        return RegistryWritten(written=written)

    @api.get(
        "/helpers",
        response_model=list[HelperSummary],
        summary="Helpers, without contacts (an operator or admin key)",
        dependencies=[Depends(require(Role.operator, Role.admin))],
    )
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


# What the helper taps to close the loop (问到、访到、帮到、送到).
RESOLUTION_LABELS = {
    Resolution.helped: "已上门帮到",
    Resolution.delivered: "已送到",
    Resolution.referred: "已转介给相关部门",
    Resolution.no_longer_needed: "对方已不需要帮助",
    Resolution.unreachable: "联系不上对方",
}


class OfferView(BaseModel):
    case_id: str
    offer_id: str
    state: str  # open, accepted, declined, timeout, or closed (no longer this offer)
    case_status: str
    helper_name: str
    need: str
    urgency: str
    district: str
    distance_km: float | None
    ack_due: datetime | None


class AnswerResult(BaseModel):
    result: str
    address: str | None = None
    contact_phone: str | None = None
    message: str


def offers_router(
    matching: Matching, links: OfferLinks, cases: CaseStore, audit: AuditLog
) -> APIRouter:
    api = APIRouter(prefix="/v1/offers", tags=["offers"])

    async def record(doc: Document, ref: OfferRef, action: str, outcome: str) -> None:
        """Who acted through a signed link: the helper the offer was made to."""
        offer = next((o for o in CaseState.of(doc).offers if o.offer_id == ref.offer_id), None)
        actor = f"helper:{offer.helper_id}" if offer else f"offer:{ref.offer_id}"
        await audit.record(
            actor=actor, action=action, case_id=ref.case_id, at=utcnow(), outcome=outcome
        )

    async def load(token: str) -> tuple[OfferRef, Document]:
        ref = links.read(token)
        doc = await cases.get(ref.case_id) if ref else None
        if ref is None or doc is None:
            raise HTTPException(status_code=404, detail="no such offer")
        return ref, doc

    @api.get("/{token}", response_model=OfferView, summary="The offer a signed link names")
    async def view(token: str, request: Request) -> Response:
        ref, doc = await load(token)
        offer = next((o for o in CaseState.of(doc).offers if o.offer_id == ref.offer_id), None)
        if offer is None:
            raise HTTPException(status_code=404, detail="no such offer")
        zh = labels()
        summary = OfferView(
            case_id=ref.case_id,
            offer_id=ref.offer_id,
            state=offer.outcome or "open",
            case_status=doc["status"],
            helper_name=offer.name,
            need=zh["need"][doc["need"]],
            urgency=zh["urgency"][doc["urgency"]],
            district=district_name(doc["facts"]["division_code"]),
            distance_km=offer.distance_km,
            ack_due=offer.ack_due,
        )
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_page(summary, _base(request, token)))
        return JSONResponse(summary.model_dump(mode="json"))

    async def respond(token: str, request: Request, response: OfferResponse) -> Response:
        ref, doc = await load(token)
        reason = await _reason(request)
        reply = OfferAnswer(
            case_id=ref.case_id, offer_id=ref.offer_id, response=response, reason=reason
        )
        outcome = await matching.answer(reply)
        await record(doc, ref, response.value, outcome.value)
        if outcome is Answer.stale:
            result = AnswerResult(result="closed", message="这个任务已处理或已过期，谢谢您。")
            return _reply(result, request, 409)
        if outcome is Answer.accepted:
            # The address and number go to the helper who accepted, and only to them.
            address, phone = await matching.contact_details(ref.case_id)
            result = AnswerResult(
                result="accepted",
                message="已确认接单，请尽快联系并上门。",
                address=address,
                contact_phone=phone,
            )
        else:
            result = AnswerResult(result="declined", message="已记录，我们会安排其他人员。")
        return _reply(result, request, 200, _base(request, token))

    @api.post(
        "/{token}/accept",
        response_model=AnswerResult,
        summary="Accept the offer",
        responses={409: {"model": AnswerResult}},
    )
    async def accept(token: str, request: Request) -> Response:
        return await respond(token, request, OfferResponse.accept)

    @api.post(
        "/{token}/decline",
        response_model=AnswerResult,
        summary="Decline the offer",
        responses={409: {"model": AnswerResult}},
    )
    async def decline(token: str, request: Request) -> Response:
        return await respond(token, request, OfferResponse.decline)

    @api.post(
        "/{token}/resolve",
        response_model=AnswerResult,
        summary="Close the case as the helper who accepted it (问到、访到、帮到、送到)",
        description="Body: `resolution` (form field or JSON), one of "
        + ", ".join(f"`{r.value}`" for r in Resolution),
        responses={409: {"model": AnswerResult}, 422: {"description": "Unknown resolution"}},
    )
    async def resolve(token: str, request: Request) -> Response:
        ref, doc = await load(token)
        value = await _field(request, "resolution")
        try:
            resolution = Resolution(value)
        except ValueError:
            raise RequestValidationError(
                [
                    {
                        "type": "enum",
                        "loc": ("body", "resolution"),
                        "msg": "must be one of " + ", ".join(r.value for r in Resolution),
                        "input": value,
                    }
                ]
            ) from None
        command = ResolveCase(
            case_id=ref.case_id, resolution=resolution, by=Resolver.helper, offer_id=ref.offer_id
        )
        resolved = await matching.resolve(command)
        await record(doc, ref, "resolve", resolution.value if resolved else "refused")
        if not resolved:
            result = AnswerResult(result="closed", message="这个任务已办结或不在您名下，谢谢您。")
            return _reply(result, request, 409)
        result = AnswerResult(result="resolved", message="已办结，感谢您的帮助！")
        return _reply(result, request, 200)

    return api


def _base(request: Request, token: str) -> str:
    """The offer's own URL, without any action after the token."""
    url = str(request.url)
    return url[: url.index(token) + len(token)]


async def _reason(request: Request) -> str:
    return (await _field(request, "reason"))[:200]


async def _field(request: Request, name: str) -> str:
    """One field of a form or JSON body ("" when absent or unreadable)."""
    body = (await request.body()).decode(errors="replace")
    if request.headers.get("content-type", "").startswith("application/json") and body:
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            return ""
        return str(data.get(name, "")) if isinstance(data, dict) else ""
    return parse_qs(body).get(name, [""])[0]


def _reply(result: AnswerResult, request: Request, status: int, offer_url: str = "") -> Response:
    if "text/html" in request.headers.get("accept", ""):
        lines = [result.message]
        if result.address:
            lines += [f"地址：{result.address}", f"联系电话：{result.contact_phone}"]
        body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
        if result.result == "accepted" and offer_url:
            body += _resolve_form(offer_url)
        return HTMLResponse(_html("CareRelay 帮扶任务", body), status_code=status)
    return JSONResponse(result.model_dump(), status_code=status)


def _resolve_form(offer_url: str) -> str:
    options = "".join(
        f'<option value="{r.value}">{html.escape(label)}</option>'
        for r, label in RESOLUTION_LABELS.items()
    )
    return (
        "<p>完成后请在这里办结：</p>"
        f'<form method="post" action="{html.escape(offer_url)}/resolve">'
        f'<select name="resolution">{options}</select>'
        '<button type="submit">办结</button></form>'
    )


def _page(offer: OfferView, url: str) -> str:
    facts = [("需求", offer.need), ("紧急程度", offer.urgency), ("区域", offer.district)]
    if offer.distance_km is not None:
        facts.append(("距离", f"约 {offer.distance_km:.1f} 公里"))
    rows = "".join(f"<p>{k}：{html.escape(v)}</p>" for k, v in facts)
    if offer.state == "accepted" and offer.case_status == "accepted":
        return _html("CareRelay 帮扶任务", rows + "<p>您已接单。</p>" + _resolve_form(url))
    if offer.case_status == "resolved" and offer.state == "accepted":
        return _html("CareRelay 帮扶任务", rows + "<p>这个任务已办结，感谢您的帮助！</p>")
    if offer.state != "open":
        return _html("CareRelay 帮扶任务", rows + "<p>这个任务已处理，谢谢您。</p>")
    forms = (
        f'<form method="post" action="{html.escape(url)}/accept">'
        '<button type="submit">接单</button></form>'
        f'<form method="post" action="{html.escape(url)}/decline">'
        '<select name="reason"><option value="busy">没有时间</option>'
        '<option value="too_far">太远</option><option value="other">其他原因</option></select>'
        '<button type="submit">无法接单</button></form>'
    )
    return _html("CareRelay 帮扶任务", rows + "<p>地址和联系方式在接单后显示。</p>" + forms)


def _html(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )
