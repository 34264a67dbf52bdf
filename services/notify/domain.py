"""Who hears what, over which channels in which order: pure functions, no I/O.

Channels are chosen by what they reach (a phone, an email address, a group chat, a system's
webhook, a hotline) and how (text or voice), never by name, so a new adapter needs no change
here. Messages that carry personal data never go to group chats."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.contracts import (
    AssignedHelper,
    CaseAccepted,
    CaseAssigned,
    CaseEscalated,
    CaseResolved,
    ContactChannel,
    DisabilityCategory,
    Event,
    HardshipReported,
    HelperKind,
    HotlineStatus,
)
from shared.contracts import Contact as Contact
from shared.people import PersonalData

from .channels.base import ChannelInfo, Reaches

CONSOLE = "console"
WECHAT_WORK = "wechat_work"
EMAIL = "email"
SMS = "sms"
VOICE = "voice"
WEBHOOK = "webhook"
HOTLINE = "hotline"

Labels = Mapping[str, Mapping[str, str]]
TEXT_ONLY = frozenset({DisabilityCategory.hearing, DisabilityCategory.speech})
VIA_CARER = frozenset({DisabilityCategory.intellectual, DisabilityCategory.mental})
HELPER_PURPOSES = frozenset({"assignment", "work_order", "escalation"})


@dataclass(frozen=True)
class Route:
    channel: str
    address: str


@dataclass(frozen=True)
class Defaults:
    """Addresses configured for the deployment, used when a helper has none of their own."""

    team_webhook: str | None = None
    duty_desk_webhook: str | None = None
    case_url_base: str = "http://127.0.0.1:8000/v1/cases/"


@dataclass(frozen=True)
class Context:
    """Everything planning knows besides the event: labels, defaults and what is configured."""

    labels: Labels
    defaults: Defaults
    channels: Mapping[str, ChannelInfo]
    hotlines: frozenset[str] = frozenset()  # sources whose status callbacks are configured


@dataclass(frozen=True)
class PlannedMessage:
    purpose: str
    recipient_kind: str
    recipient_id: str
    template: str
    routes: tuple[Route, ...]
    facts: dict[str, str]
    mentioned_mobiles: tuple[str, ...] = ()
    occasion: str = ""  # what makes a repeat a new message (the offer id)
    data: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def ref(self) -> str:
        """Names the message (not one attempt): ids only, never personal data."""
        parts = (self.purpose, self.occasion, self.recipient_kind, self.recipient_id)
        return ":".join(p for p in parts if p)

    def key(self, route: Route, attempt: int = 1) -> str:
        """Idempotency key of one send; ids only, never personal data."""
        return f"{self.ref}:{route.channel}:{attempt}"


# ------------------------------------------------------------------ routes


def _routes(
    ctx: Context, addresses: list[tuple[Reaches, str | None]], *, private: bool, voice: bool = False
) -> tuple[Route, ...]:
    """Each address, over every configured channel reaching it (text before voice), skipping
    group chats and the console when the message is private; else the console last when it is
    configured."""
    routes: list[Route] = []
    for reach, address in addresses:
        if not address:
            continue
        for info in _reaching(ctx, reach, voice=voice):
            if private and not info.private:
                continue
            routes.append(Route(info.name, address))
    return tuple(dict.fromkeys(routes)) if private else _with_console(ctx, routes)


def _reaching(ctx: Context, reach: Reaches, voice: bool = False) -> list[ChannelInfo]:
    found = [c for c in ctx.channels.values() if c.reaches == reach]
    found = [c for c in found if voice or c.medium == "text"]
    return sorted(found, key=lambda c: c.medium != "text")


def _with_console(ctx: Context, routes: list[Route]) -> tuple[Route, ...]:
    console = [Route(c.name, c.name) for c in ctx.channels.values() if c.reaches == "log"]
    return (*dict.fromkeys(routes), *console)


def helper_routes(
    kind: HelperKind, contact: Contact, ctx: Context, *, private: bool = False
) -> tuple[Route, ...]:
    """A helper's channels: their own group, the team's (or the duty desk's), a text to their
    phone, email; an agency's own system and email first."""
    d = ctx.defaults
    own: list[tuple[Reaches, str | None]] = [("group", contact.wechat_webhook)]
    if kind is HelperKind.duty_desk:
        shared_group = d.duty_desk_webhook or d.team_webhook
    elif kind is HelperKind.agency:
        shared_group = None
    else:
        shared_group = d.team_webhook
    reachable: list[tuple[Reaches, str | None]] = [
        *own,
        ("group", shared_group),
        ("phone", contact.phone),
        ("email", contact.email),
        ("webhook", contact.webhook),
    ]
    if kind is HelperKind.agency:
        reachable = [("webhook", contact.webhook), ("email", contact.email), *own]
    return _routes(ctx, reachable, private=private)


def person_channel_order(
    category: DisabilityCategory,
    preferred: ContactChannel | None,
    channels: list[ChannelInfo],
    via_carer: bool,
) -> list[ChannelInfo]:
    """Deaf or speech-impaired: text only, never a call. Blind: a call first. Otherwise text
    first. The person's own preference wins where it is possible; a carer gets text first."""
    if via_carer:
        return sorted(channels, key=lambda c: c.medium != "text")
    if category in TEXT_ONLY:
        ordered = [c for c in channels if c.medium == "text"]
    elif category is DisabilityCategory.visual:
        ordered = sorted(channels, key=lambda c: c.medium != "voice")
    else:
        ordered = sorted(channels, key=lambda c: c.medium != "text")
    if preferred is not None:
        ordered.sort(key=lambda c: c.name != preferred.value)
    return ordered


def contact_via_carer(person: PersonalData) -> bool:
    """Intellectual or mental disability: contact goes through the carer, when there is one."""
    return person.disability_category in VIA_CARER and person.carer_phone is not None


# ------------------------------------------------------------------ facts


def _district(division_code: str, labels: Labels) -> str:
    county = division_code[:6]
    return labels["division"].get(county, county)


def _helper_display(helper: AssignedHelper, labels: Labels, with_name: bool = True) -> str:
    kind = labels["helper_kind"].get(helper.kind.value, helper.kind.value)
    if helper.kind in (HelperKind.agency, HelperKind.duty_desk) or not with_name:
        return helper.name if helper.kind in (HelperKind.agency, HelperKind.duty_desk) else kind
    return f"{kind} {helper.name}"


def _case_facts(event: CaseAssigned | CaseEscalated, ctx: Context) -> dict[str, str]:
    labels = ctx.labels
    helper = event.helper
    return {
        "helper_name": helper.name,
        "need": labels["need"][event.need.value],
        "urgency": labels["urgency"][event.urgency.value],
        "district": _district(event.division_code, labels),
        "division_code": event.division_code,
        "distance": (
            f"{helper.distance_km:.1f} {labels['unit']['km']}"
            if helper.distance_km is not None
            else "—"
        ),
        "case_url": f"{ctx.defaults.case_url_base}{event.case_id}",
        "reason": "",
        "respond_url": "",
    }


def _tail(phone: str | None) -> str:
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    return digits[-4:]


# ------------------------------------------------------------------ who hears what


def offer(event: CaseAssigned, contact: Contact, ctx: Context) -> PlannedMessage:
    """The helper offered a case: what, district and distance, urgency, the accept/decline
    link; no address before they accept."""
    helper = event.helper
    facts = _case_facts(event, ctx)
    facts["respond_url"] = event.respond_url or facts["case_url"]
    agency = helper.kind is HelperKind.agency
    return PlannedMessage(
        purpose="work_order" if agency else "assignment",
        recipient_kind=helper.kind.value,
        recipient_id=helper.helper_id,
        template="work_order_agency" if agency else "assignment_helper",
        routes=helper_routes(helper.kind, contact, ctx),
        facts=facts,
        mentioned_mobiles=(contact.phone,) if contact.phone and not agency else (),
        occasion=event.offer_id,
    )


def escalation(event: CaseEscalated, contact: Contact, ctx: Context) -> PlannedMessage:
    facts = _case_facts(event, ctx)
    facts["reason"] = ctx.labels["reason"].get(event.reason, event.reason)
    return PlannedMessage(
        purpose="escalation",
        recipient_kind=event.helper.kind.value,
        recipient_id=event.helper.helper_id,
        template="escalation_duty_desk",
        routes=helper_routes(event.helper.kind, contact, ctx),
        facts=facts,
    )


def details(
    event: CaseAccepted, contact: Contact, person: PersonalData, ctx: Context, case_url: str
) -> PlannedMessage:
    """Once accepted: the address and the number to call (the carer's when contact goes
    through the carer), by private channels only."""
    labels = ctx.labels
    via_carer = contact_via_carer(person)
    category = person.disability_category.value
    hint = labels["contact_hint"]["carer" if via_carer else category]
    return PlannedMessage(
        purpose="details",
        recipient_kind=event.helper.kind.value,
        recipient_id=event.helper.helper_id,
        template="details_helper",
        routes=helper_routes(event.helper.kind, contact, ctx, private=True),
        facts={
            "helper_name": event.helper.name,
            "person_name": person.name,
            "address": person.address,
            "call_number": (person.carer_phone if via_carer else person.phone) or "",
            "call_whom": labels["call_whom"]["carer" if via_carer else "person"],
            "contact_hint": hint,
            "case_url": case_url,
        },
        occasion=event.offer_id,
    )


def arranged(
    event: CaseAccepted,
    helper_contact: Contact,
    person: PersonalData,
    ctx: Context,
    urgency: str,
) -> PlannedMessage:
    """The person (or their carer): help is arranged, who will contact them, and when."""
    labels = ctx.labels
    via_carer = contact_via_carer(person)
    phone = (person.carer_phone if via_carer else person.phone) or ""
    order = person_channel_order(
        person.disability_category,
        person.preferred_channel,
        _reaching(ctx, "phone", voice=True),
        via_carer,
    )
    # It names the person: never the console (a log), whatever is configured.
    routes = tuple(Route(c.name, phone) for c in order) if phone else ()
    return PlannedMessage(
        purpose="arranged",
        recipient_kind="carer" if via_carer else "person",
        recipient_id="carer" if via_carer else "person",
        template="arranged_carer" if via_carer else "arranged_person",
        routes=routes,
        facts={
            "person_name": person.name,
            "helper": _helper_display(event.helper, labels),
            "helper_phone_tail": _tail(helper_contact.phone) or labels["unit"]["unknown"],
            "contact_within": labels["contact_within"].get(urgency, urgency),
        },
        occasion=event.offer_id,
    )


def hotline_status(event: Event) -> HotlineStatus | None:
    """Which status callback an event is, if any."""
    return {
        HardshipReported: HotlineStatus.received,
        CaseAssigned: HotlineStatus.assigned,
        CaseAccepted: HotlineStatus.accepted,
        CaseEscalated: HotlineStatus.escalated,
        CaseResolved: HotlineStatus.resolved,
    }.get(type(event))


def status_callback(event: Event, ctx: Context) -> PlannedMessage | None:
    """The source hotline hears what happened to its ticket; nothing if it has no callback."""
    status = hotline_status(event)
    if status is None or event.source not in ctx.hotlines:
        return None
    labels = ctx.labels
    helper: AssignedHelper | None = getattr(event, "helper", None)
    need = getattr(event, "need", None)
    if need is None and isinstance(event, HardshipReported):
        need = event.facts.need
    resolution = getattr(event, "resolution", None)
    reason = getattr(event, "reason", "") or ""
    facts = {
        "status": labels["status"][status.value],
        "need": labels["need"][need.value] if need is not None else "",
        "helper": _helper_display(helper, labels, with_name=False) if helper else "",
        "reason": labels["reason"].get(reason, reason),
        "resolution": labels["resolution"][resolution.value] if resolution else "",
        "external_id": event.external_id,
    }
    return PlannedMessage(
        purpose=f"status_{status.value}",
        recipient_kind="hotline",
        recipient_id=event.source,
        template=f"status_{status.value}",
        routes=(Route(HOTLINE, event.source),),
        facts=facts,
        occasion=getattr(event, "offer_id", ""),
        data={
            "source": event.source,
            "external_id": event.external_id,
            "case_id": event.case_id,
            "status": status.value,
            "occurred_at": event.occurred_at.isoformat(),
            "helper_kind": helper.kind.value if helper else None,
            "resolution": resolution.value if resolution else None,
            "reason": reason,
        },
    )


def plan(
    event: Event,
    ctx: Context,
    helper_contact: Contact | None = None,
    person: PersonalData | None = None,
    urgency: str = "",
) -> list[PlannedMessage]:
    """Every message an event calls for, in the order they should go out."""
    contact = helper_contact or Contact()
    messages: list[PlannedMessage] = []
    if isinstance(event, CaseAssigned):
        messages.append(offer(event, contact, ctx))
    elif isinstance(event, CaseEscalated):
        messages.append(escalation(event, contact, ctx))
    elif isinstance(event, CaseAccepted) and person is not None:
        case_url = f"{ctx.defaults.case_url_base}{event.case_id}"
        messages.append(details(event, contact, person, ctx, case_url))
        messages.append(arranged(event, contact, person, ctx, urgency))
    callback = status_callback(event, ctx)
    if callback is not None:
        messages.append(callback)
    return messages
