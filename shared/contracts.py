"""The contracts between CareRelay and the outside world, and between its services.

Hotlines integrate against `HardshipReport`; services talk through the events below.
Every event carries an id, a time, a schema version and the case id. Readers ignore
fields they do not know, so a producer may add fields without breaking older consumers.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1


class Need(StrEnum):
    food = "food"
    medicine = "medicine"
    medical_care = "medical_care"
    daily_care = "daily_care"
    emergency = "emergency"
    benefits = "benefits"
    utilities = "utilities"
    rehabilitation = "rehabilitation"
    assistive_device = "assistive_device"
    accessibility_renovation = "accessibility_renovation"
    disability_assessment = "disability_assessment"
    employment = "employment"
    education = "education"
    housing = "housing"
    legal_aid = "legal_aid"
    psychological_support = "psychological_support"
    other = "other"


class Urgency(StrEnum):
    immediate = "immediate"
    within_24h = "within_24h"
    within_72h = "within_72h"
    routine = "routine"


class DisabilityCategory(StrEnum):
    visual = "visual"
    hearing = "hearing"
    speech = "speech"
    physical = "physical"
    intellectual = "intellectual"
    mental = "mental"
    multiple = "multiple"


class ContactChannel(StrEnum):
    sms = "sms"
    voice = "voice"
    wechat = "wechat"
    email = "email"


class HelperKind(StrEnum):
    volunteer = "volunteer"
    paired_cadre = "paired_cadre"
    community_worker = "community_worker"
    agency = "agency"
    duty_desk = "duty_desk"


class CaseStatus(StrEnum):
    received = "received"
    assigned = "assigned"  # offered to a helper, waiting for them to accept
    accepted = "accepted"
    escalated = "escalated"  # with the duty desk
    resolved = "resolved"  # the helper (or the duty desk) closed the loop: 问到、访到、帮到、送到


class Resolution(StrEnum):
    """How a case was closed; the hotline's closing report (及时反馈解决) says which."""

    helped = "helped"  # the need was met at the door
    delivered = "delivered"  # goods or medicine delivered
    referred = "referred"  # handed to an agency that took it on
    no_longer_needed = "no_longer_needed"
    unreachable = "unreachable"  # nobody could reach the person; the duty desk follows up


class Resolver(StrEnum):
    helper = "helper"  # the helper who accepted the case
    duty_desk = "duty_desk"  # the duty desk, for a case escalated to it


class OfferResponse(StrEnum):
    accept = "accept"
    decline = "decline"


DIVISION_CODE = re.compile(r"^(\d{6}|\d{9}|\d{12})$")
PHONE = re.compile(r"^\+?[0-9][0-9\- ]{5,19}$")
ID_NUMBER = re.compile(r"^\d{17}[\dXx]$")  # 居民身份证号码 (GB 11643)
# 残疾人证号: the 18-character ID number, then category (1-7) and grade (1-4) digits
CERTIFICATE_NUMBER = re.compile(r"^\d{17}[\dXx][1-7][1-4]$")

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Inbound(BaseModel):
    """Tolerant reader: unknown fields are ignored, so hotlines may send more than we know."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


def _division_code(value: str) -> str:
    if not DIVISION_CODE.match(value):
        raise ValueError("must be a 6-, 9- or 12-digit administrative division code")
    return value


def county_of(division_code: str) -> str:
    """The county-level (6-digit) prefix of any division code."""
    return division_code[:6]


class Disability(_Inbound):
    category: DisabilityCategory
    grade: int = Field(ge=1, le=4, description="1 is the most severe (GB/T 26341)")


class Person(_Inbound):
    name: NonEmpty = Field(max_length=100)
    phone: str = Field(max_length=24)
    disability: Disability
    lives_alone: bool = False
    household_disabled_count: int = Field(default=1, ge=0, le=20)
    low_income: bool = False
    carer_phone: str | None = Field(default=None, max_length=24)
    preferred_channel: ContactChannel | None = None
    id_number: str | None = Field(
        default=None, max_length=18, description="居民身份证号码, 18 characters; stored encrypted"
    )
    certificate_number: str | None = Field(
        default=None, max_length=20, description="残疾人证号, 20 characters; stored encrypted"
    )

    @field_validator("phone", "carer_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not PHONE.match(value):
            raise ValueError("must be a phone number of 6 to 20 digits")
        return value

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str | None) -> str | None:
        if value is not None and not ID_NUMBER.match(value):
            raise ValueError("must be an 18-character resident ID number")
        return value

    @field_validator("certificate_number")
    @classmethod
    def _certificate_number(cls, value: str | None) -> str | None:
        if value is not None and not CERTIFICATE_NUMBER.match(value):
            raise ValueError("must be a 20-character disability certificate number")
        return value


class Location(_Inbound):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: NonEmpty = Field(max_length=300)
    division_code: str

    _check_division = field_validator("division_code")(_division_code)


class HardshipReport(_Inbound):
    """A hardship report as a hotline posts it (HTTP body or AMQP message body)."""

    source: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    ] = Field(description="The reporting system, e.g. `12345-wuhan`; lower case, digits, . _ -")
    external_id: NonEmpty = Field(max_length=128, description="The hotline's own ticket id")
    reported_at: AwareDatetime = Field(description="ISO 8601 with a UTC offset")
    need: Need
    urgency: Urgency
    description: str = Field(default="", max_length=4000)
    person: Person
    location: Location

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source": "12345-wuhan",
                    "external_id": "WH20221122-004518",
                    "reported_at": "2022-11-22T08:15:00+08:00",
                    "need": "medicine",
                    "urgency": "immediate",
                    "description": "一级视力残疾，独居，小区封控，降压药只剩一天的量，无法外出购药。",  # noqa: E501
                    "person": {
                        "name": "张秀英",
                        "phone": "13800138000",
                        "disability": {"category": "visual", "grade": 1},
                        "lives_alone": True,
                        "household_disabled_count": 1,
                        "low_income": True,
                        "carer_phone": None,
                        "preferred_channel": "voice",
                    },
                    "location": {
                        "lat": 30.5801,
                        "lon": 114.2734,
                        "address": "湖北省武汉市江汉区北湖街道某小区3栋2单元401",
                        "division_code": "420103",
                    },
                }
            ]
        }
    )


# ---------------------------------------------------------------- events


def new_event_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Envelope every event shares."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    routing_key: ClassVar[str]

    @classmethod
    def slot(cls) -> str:
        """Where a case document keeps the last event of this type (no dots in field names)."""
        return cls.routing_key.replace(".", "_")

    event_id: str = Field(default_factory=new_event_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION
    case_id: str
    # The hotline's own reference, so status callbacks need no lookup; not personal data.
    source: str = ""
    external_id: str = ""


class CaseFacts(BaseModel):
    """What matching needs to know about a case, without anything that identifies the person."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    source: str
    external_id: str = ""
    need: Need
    urgency: Urgency
    disability_category: DisabilityCategory
    disability_grade: int
    lives_alone: bool
    household_disabled_count: int
    low_income: bool
    has_carer: bool
    lat: float
    lon: float
    division_code: str
    reported_at: datetime
    received_at: datetime
    person_key: str = Field(
        default="", description="Keyed hash of the person's phone: links cases, reveals nothing"
    )


class HardshipReported(Event):
    routing_key: ClassVar[str] = "hardship.reported"
    event_type: Literal["hardship.reported"] = "hardship.reported"
    facts: CaseFacts


class AssignedHelper(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    helper_id: str
    kind: HelperKind
    name: str
    distance_km: float | None = None


class CaseAssigned(Event):
    """A helper is offered the case; it is theirs once they accept."""

    routing_key: ClassVar[str] = "case.assigned"
    event_type: Literal["case.assigned"] = "case.assigned"
    helper: AssignedHelper
    need: Need
    urgency: Urgency
    division_code: str
    received_at: datetime
    offer_id: str = ""
    ack_due: datetime | None = None
    respond_url: str | None = None
    priority: str = ""
    rung: str = ""
    contact_via_carer: bool = False


class CaseAccepted(Event):
    routing_key: ClassVar[str] = "case.accepted"
    event_type: Literal["case.accepted"] = "case.accepted"
    offer_id: str
    helper: AssignedHelper


class CaseResolved(Event):
    """The loop is closed: the helper who accepted (or the duty desk) reports the outcome."""

    routing_key: ClassVar[str] = "case.resolved"
    event_type: Literal["case.resolved"] = "case.resolved"
    resolution: Resolution
    helper: AssignedHelper | None = None
    by: Resolver = Resolver.helper


class CaseDeclined(Event):
    """An offer ended without acceptance: declined, or no answer in time (`timeout`)."""

    routing_key: ClassVar[str] = "case.declined"
    event_type: Literal["case.declined"] = "case.declined"
    offer_id: str
    helper: AssignedHelper
    reason: str


class OfferAnswer(BaseModel):
    """A helper's answer to an offer, over AMQP (routing key `offer.answer`) or HTTP."""

    model_config = ConfigDict(extra="ignore")
    routing_key: ClassVar[str] = "offer.answer"

    case_id: str
    offer_id: str
    response: OfferResponse
    reason: str = Field(default="", max_length=200)


class ResolveCase(BaseModel):
    """Close the loop on a case (问到、访到、帮到、送到), over AMQP (routing key
    `resolution.submit`) or a helper's signed offer link: by the helper who accepted it (naming
    the accepted offer), or by the duty desk for a case escalated to it."""

    model_config = ConfigDict(extra="ignore")
    routing_key: ClassVar[str] = "resolution.submit"

    case_id: str
    resolution: Resolution
    by: Resolver = Resolver.helper
    offer_id: str = Field(default="", description="The accepted offer; required from a helper")

    @model_validator(mode="after")
    def _helper_names_the_offer(self) -> ResolveCase:
        if self.by is Resolver.helper and not self.offer_id:
            raise ValueError("offer_id is required when the helper resolves the case")
        return self


class CaseEscalated(Event):
    routing_key: ClassVar[str] = "case.escalated"
    event_type: Literal["case.escalated"] = "case.escalated"
    helper: AssignedHelper
    reason: str
    need: Need
    urgency: Urgency
    division_code: str
    received_at: datetime


class OutreachSent(Event):
    routing_key: ClassVar[str] = "outreach.sent"
    event_type: Literal["outreach.sent"] = "outreach.sent"
    channel: str
    purpose: str
    recipient_kind: str


class OutreachFailed(Event):
    """A channel gave up on a message after its attempts; `fallback` names the channel tried
    next, or is empty when none is left (the message is then dead-lettered for an operator)."""

    routing_key: ClassVar[str] = "outreach.failed"
    event_type: Literal["outreach.failed"] = "outreach.failed"
    channel: str
    purpose: str
    recipient_kind: str
    error: str
    recipient_id: str = ""
    attempts: int = 0
    fallback: str = ""


class OutreachRetry(BaseModel):
    """Notify's note to itself: try this message again (after a delay queue, or replayed by an
    operator). It carries the triggering event, which holds no personal data, not the text."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    routing_key: ClassVar[str] = "notify.outreach-retry"

    event_id: str = Field(default_factory=new_event_id)
    case_id: str
    event: dict[str, Any]
    purpose: str
    recipient_kind: str
    recipient_id: str
    route: int = Field(ge=0, description="Index of the channel in the message's fallback order")
    attempt: int = Field(ge=1, description="Attempt number, counted over the message's life")
    route_attempt: int = Field(default=1, ge=1, description="Attempt number on this channel")


class OutreachDeadLetter(BaseModel):
    """A message every channel gave up on, kept for an operator to list and replay."""

    model_config = ConfigDict(extra="ignore")
    collection: ClassVar[str] = "outreach_dead_letters"

    id: str = Field(alias="_id")
    case_id: str
    source: str = ""
    external_id: str = ""
    purpose: str
    recipient_kind: str
    recipient_id: str
    channels: list[str] = Field(default_factory=list)
    error: str
    attempts: int
    event: dict[str, Any]
    status: Literal["open", "replayed"] = "open"
    failed_at: datetime
    replayed_at: datetime | None = None
    replays: int = 0


class HotlineStatus(StrEnum):
    """What a hotline hears about its ticket (status callbacks, 及时反馈)."""

    received = "received"
    assigned = "assigned"
    accepted = "accepted"
    escalated = "escalated"
    resolved = "resolved"


class HotlineStatusData(BaseModel):
    source: str
    external_id: str = Field(description="The hotline's own ticket id")
    case_id: str
    status: HotlineStatus
    occurred_at: datetime
    summary: str = Field(description="One line for the hotline agent, in the deployment's locale")
    helper_kind: HelperKind | None = None
    resolution: Resolution | None = None
    reason: str = ""


class HotlineStatusCallback(BaseModel):
    """The body CareRelay POSTs to a hotline's callback URL, signed per Standard Webhooks
    (headers webhook-id, webhook-timestamp, webhook-signature)."""

    type: Literal["case.status"] = "case.status"
    timestamp: datetime
    data: HotlineStatusData


# ---------------------------------------------------------------- registry


class Availability(BaseModel):
    """A weekly window in Asia/Shanghai time; days are ISO weekdays (1 = Monday)."""

    model_config = ConfigDict(extra="ignore")

    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7]
    )
    start: Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "00:00"
    end: Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-4]):[0-5]\d$")] = "24:00"


class Contact(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phone: str | None = None
    email: str | None = None
    wechat_webhook: str | None = Field(
        default=None, description="WeChat Work group-bot webhook URL for this helper's team"
    )
    webhook: str | None = Field(
        default=None, description="An agency's own system: work orders are POSTed here as JSON"
    )


class HelperRecord(BaseModel):
    """A volunteer, cadre, community worker, agency or the duty desk, as the registry holds it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: NonEmpty = Field(max_length=64)
    kind: HelperKind
    name: NonEmpty = Field(max_length=200)
    active: bool = True
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    radius_km: float = Field(default=5.0, gt=0, le=500)
    capacity: int = Field(default=3, ge=0, le=1_000_000)
    skills: list[str] = Field(default_factory=list)
    needs: list[Need] = Field(
        default_factory=list, description="Need categories served; empty means every need"
    )
    divisions: list[str] = Field(
        default_factory=list, description="Division codes served (agencies, duty desks)"
    )
    contact: Contact = Field(default_factory=Contact)
    hours: list[Availability] = Field(
        default_factory=list, description="When they can be asked; empty means any time"
    )
    paired_with: list[str] = Field(
        default_factory=list,
        description="Paired cadres: phone numbers of the people they are paired with (结对). "
        "Stored only as keyed hashes.",
    )

    _check_divisions = field_validator("divisions")(
        lambda values: [_division_code(v) for v in values]
    )


class Registry(BaseModel):
    helpers: list[HelperRecord]


class RegistryChanged(BaseModel):
    routing_key: ClassVar[str] = "registry.changed"
    event_id: str = Field(default_factory=new_event_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION
    helper_ids: list[str]
