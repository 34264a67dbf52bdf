"""The HTTP API hotlines integrate against."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.audit import AuditLog
from shared.auth import Caller, Role
from shared.contracts import HardshipReport, Resolution, ResolveCase, Resolver, utcnow
from shared.crypto import FieldCipher
from shared.guard import Authorized, require
from shared.storage import Document

from .metrics import IntakeMetrics
from .privacy import PersonView, person_view
from .repository import CaseRepository
from .usecases import Intake, Overloaded

DutyOfficer = Annotated[Caller, Depends(require(Role.operator))]


class ReportAccepted(BaseModel):
    case_id: str
    status_url: str
    duplicate: bool = Field(description="True when this (source, external_id) was already reported")


class FieldError(BaseModel):
    field: str
    message: str


class ValidationProblem(BaseModel):
    error: str = "invalid report"
    message: str
    fields: list[FieldError]


class AssignmentView(BaseModel):
    helper_id: str
    kind: str
    name: str
    distance_km: float | None = None


class CandidateView(BaseModel):
    helper_id: str
    kind: str
    basis: str = Field(
        default="nearby", description="paired_cadre, previous_helper, nearby, or jurisdiction"
    )
    score: float | None = Field(default=None, description="None when the basis alone decides")
    distance_km: float | None = None


class ExclusionView(BaseModel):
    helper_id: str
    reason: str


class DecisionView(BaseModel):
    """One ranking: who was considered on a rung, best first, and why others were left out."""

    at: datetime | None = None
    outcome: str = Field(description="offer or escalate")
    reason: str
    rung: str = "field"
    required_skills: list[str] = []
    considered: int | None = Field(
        default=None,
        description="Helpers examined (the nearest; the search stops once the "
        "rest are too far to rank)",
    )
    candidates: list[CandidateView] = []
    excluded: list[ExclusionView] = []


class LadderStepView(BaseModel):
    rung: str = Field(description="field, field_widened, local, agency or duty_desk")
    reason: str = Field(
        description="Why the case came to this rung: start, offers_exhausted, "
        "no_eligible_helper, all_candidates_at_capacity"
    )
    at: datetime


class ResolutionView(BaseModel):
    resolution: str = Field(
        description="helped, delivered, referred, no_longer_needed or unreachable"
    )
    by: str = Field(description="helper or duty_desk")
    at: datetime
    helper_id: str | None = None


class TriageView(BaseModel):
    priority: str
    score: int
    factors: list[str]
    first_contact_due: datetime
    resolution_due: datetime


class OfferView(BaseModel):
    offer_id: str | None = None
    helper_id: str
    kind: str
    name: str
    rung: str
    basis: str
    offered_at: datetime
    ack_due: datetime
    distance_km: float | None = None
    outcome: str | None = Field(
        default=None, description="accepted, declined, timeout; None while open"
    )
    reason: str = ""
    answered_at: datetime | None = None


class OutreachView(BaseModel):
    purpose: str
    recipient_kind: str
    channel: str
    recipient: str = Field(description="Masked")
    status: str
    error: str | None = None
    at: datetime


class TimelineEntry(BaseModel):
    status: str
    at: datetime
    reason: str | None = None
    helper_id: str | None = None
    rung: str | None = None


class CaseView(BaseModel):
    case_id: str
    source: str
    external_id: str
    status: str
    need: str
    urgency: str
    division_code: str
    reported_at: datetime
    received_at: datetime
    triage: TriageView | None = None
    assignment: AssignmentView | None = None
    decision: DecisionView | None = Field(default=None, description="The latest ranking")
    decisions: list[DecisionView] = Field(default=[], description="Every ranking, oldest first")
    ladder: list[LadderStepView] = Field(
        default=[], description="Each rung of the escalation ladder the case came to, and why"
    )
    offers: list[OfferView] = []
    resolution: ResolutionView | None = None
    outreach: list[OutreachView] = []
    timeline: list[TimelineEntry] = []
    person: PersonView | None = None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> CaseView:
        return cls(
            case_id=doc["_id"],
            division_code=doc["location"]["division_code"],
            **{
                k: doc.get(k)
                for k in (
                    "source",
                    "external_id",
                    "status",
                    "need",
                    "urgency",
                    "reported_at",
                    "received_at",
                    "triage",
                    "assignment",
                    "decision",
                    "timeline",
                    "resolution",
                )
            },
            decisions=doc.get("decisions", []),
            ladder=(doc.get("ladder") or {}).get("steps", []),
            offers=doc.get("offers", []),
            outreach=doc.get("outreach", []),
        )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def install_error_handler(app: FastAPI, metrics: IntakeMetrics) -> None:
    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        metrics.rejected.labels("overloaded").inc()
        retry_after = max(1, math.ceil(exc.retry_after_s))
        return JSONResponse(
            {
                "error": "overloaded",
                "message": "too many open cases queued; nothing was stored; "
                f"retry after {retry_after} s with the same external_id",
            },
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )

    @app.exception_handler(ConnectionFailure)
    async def _store_down(_: Request, exc: ConnectionFailure) -> JSONResponse:
        metrics.rejected.labels("store_unavailable").inc()
        return JSONResponse(
            {
                "error": "unavailable",
                "message": "the case store cannot be reached; retry with the "
                "same external_id (a repeat never creates a second case)",
            },
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own (e.g. unparsable body) too
    async def _refused(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
        body.setdefault("message", body["error"])
        metrics.rejected.labels(str(exc.status_code)).inc()
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(field=_field_name(tuple(e["loc"])), message=e["msg"]) for e in exc.errors()
        ]
        metrics.rejected.labels("validation").inc()
        problem = ValidationProblem(
            message="; ".join(f"{e.field}: {e.message}" for e in errors), fields=errors
        )
        return JSONResponse(problem.model_dump(), status_code=422)


class Problem(BaseModel):
    error: str
    message: str


class ResolutionRequest(BaseModel):
    resolution: Resolution


class ResolutionAccepted(BaseModel):
    case_id: str
    status_url: str


def router(
    intake: Intake,
    cases: CaseRepository,
    audit: AuditLog,
    cipher: FieldCipher,
    send: Callable[[ResolveCase], Awaitable[None]],
) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["reports"])
    refusals: dict[int | str, dict[str, Any]] = {
        400: {"model": Problem, "description": "The body could not be parsed at all"},
        401: {"model": Problem, "description": "No, unknown or revoked API key; bad signature"},
        403: {"model": Problem, "description": "The key's role or scope does not allow this"},
        429: {"model": Problem, "description": "Too many requests for this key"},
    }

    @api.post(
        "/reports",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=ReportAccepted,
        responses={
            200: {"model": ReportAccepted, "description": "Already reported: the same case"},
            413: {"model": Problem, "description": "Body too large"},
            422: {"model": ValidationProblem, "description": "Bad input; each bad field named"},
            503: {"model": Problem, "description": "Overloaded; retry after the given seconds"},
            **refusals,
        },
        summary="Post a hardship report",
    )
    async def post_report(
        report: HardshipReport, response: Response, caller: Authorized
    ) -> ReportAccepted:
        if caller.role is Role.operator:
            raise _forbidden("operator keys read cases; hotlines report them")
        if caller.role is Role.hotline and report.source != caller.source:
            raise _forbidden(f"source: this key reports as {caller.source!r}")
        if not caller.covers(report.location.division_code):
            raise _forbidden("location.division_code: outside the divisions of this key")
        accepted = await intake.accept(report, actor=caller.key_id)
        if not accepted.created:
            response.status_code = status.HTTP_200_OK
        return ReportAccepted(
            case_id=accepted.case_id, status_url=accepted.status_url, duplicate=not accepted.created
        )

    async def case_in_scope(case_id: str, caller: Caller, action: str, outcome: str) -> Document:
        """The case, audited either way; out of scope looks exactly like absent (404), so case
        ids cannot be probed across districts."""
        doc = await cases.get(case_id)
        visible = doc is not None and caller.may_read(
            doc["source"], doc["location"]["division_code"]
        )
        await audit.record(
            actor=caller.key_id,
            action=action,
            case_id=case_id,
            at=utcnow(),
            outcome=outcome if visible else "not_found",
        )
        if doc is None or not visible:
            raise HTTPException(404, detail={"error": "not found", "message": "no such case"})
        return doc

    @api.get(
        "/cases/{case_id}",
        response_model=CaseView,
        summary="A case and its history",
        responses={
            404: {"model": Problem, "description": "No such case in your scope"},
            **refusals,
        },
    )
    async def get_case(case_id: str, caller: Authorized) -> CaseView:
        doc = await case_in_scope(case_id, caller, "read", "ok")
        view = CaseView.of(doc)
        return view.model_copy(update={"person": person_view(doc, caller, cipher)})

    @api.post(
        "/cases/{case_id}/resolution",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=ResolutionAccepted,
        summary="Close an escalated case as the duty desk (an operator key for its district)",
        description="Matching applies it if the case is with the duty desk; follow `status_url`.",
        responses={
            404: {"model": Problem, "description": "No such case in your scope"},
            **refusals,
        },
    )
    async def resolve(
        case_id: str,
        request: ResolutionRequest,
        caller: DutyOfficer,
    ) -> ResolutionAccepted:
        await case_in_scope(case_id, caller, "resolve", request.resolution.value)
        await send(
            ResolveCase(case_id=case_id, resolution=request.resolution, by=Resolver.duty_desk)
        )
        return ResolutionAccepted(case_id=case_id, status_url=f"/v1/cases/{case_id}")

    return api


def _forbidden(message: str) -> HTTPException:
    return HTTPException(403, detail={"error": "forbidden", "message": message})
