"""Who hears what, over which channels in which order: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts import CaseAssigned, CaseEscalated, Contact, HelperKind

CONSOLE = "console"
WECHAT_WORK = "wechat_work"
EMAIL = "email"


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
class PlannedMessage:
    purpose: str
    recipient_kind: str
    recipient_id: str
    template: str
    routes: tuple[Route, ...]
    facts: dict[str, str]
    mentioned_mobiles: tuple[str, ...] = ()

    def key(self, route: Route, attempt: int = 1) -> str:
        """Idempotency key of one send; ids only, never personal data."""
        parts = (self.purpose, self.recipient_kind, self.recipient_id, route.channel, str(attempt))
        return ":".join(parts)


def _routes(
    kind: HelperKind, contact: Contact, defaults: Defaults, channels: frozenset[str]
) -> tuple[Route, ...]:
    own_webhook = [Route(WECHAT_WORK, contact.wechat_webhook)] if contact.wechat_webhook else []
    email = [Route(EMAIL, contact.email)] if contact.email else []
    if kind is HelperKind.duty_desk:
        shared_hook = defaults.duty_desk_webhook or defaults.team_webhook
        ordered = own_webhook + ([Route(WECHAT_WORK, shared_hook)] if shared_hook else []) + email
    elif kind is HelperKind.agency:
        ordered = email + own_webhook
    else:
        team = [Route(WECHAT_WORK, defaults.team_webhook)] if defaults.team_webhook else []
        ordered = own_webhook + team + email
    available = [r for r in ordered if r.channel in channels]
    return (*dict.fromkeys(available), Route(CONSOLE, CONSOLE))


def plan(
    event: CaseAssigned | CaseEscalated,
    contact: Contact,
    labels: dict[str, dict[str, str]],
    defaults: Defaults,
    channels: frozenset[str],
) -> list[PlannedMessage]:
    helper = event.helper
    district = labels["division"].get(event.division_code[:6], event.division_code[:6])
    facts = {
        "helper_name": helper.name,
        "need": labels["need"][event.need.value],
        "urgency": labels["urgency"][event.urgency.value],
        "district": district,
        "division_code": event.division_code,
        "distance": f"{helper.distance_km:.1f} 公里" if helper.distance_km is not None else "—",
        "case_url": f"{defaults.case_url_base}{event.case_id}",
        "reason": "",
    }
    if isinstance(event, CaseEscalated):
        purpose, template = "escalation", "escalation_duty_desk"
        facts["reason"] = labels["reason"].get(event.reason, event.reason)
    elif helper.kind is HelperKind.agency:
        purpose, template = "work_order", "work_order_agency"
    else:
        purpose, template = "assignment", "assignment_helper"
    mentions = (contact.phone,) if contact.phone and helper.kind is not HelperKind.agency else ()
    return [
        PlannedMessage(
            purpose=purpose,
            recipient_kind=helper.kind.value,
            recipient_id=helper.helper_id,
            template=template,
            routes=_routes(helper.kind, contact, defaults, channels),
            facts=facts,
            mentioned_mobiles=mentions,
        )
    ]
