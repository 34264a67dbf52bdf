"""Triage: how urgent a case is and when it must be contacted and resolved. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.contracts import CaseFacts, Need, Urgency


@dataclass(frozen=True)
class TriageRules:
    points: dict[str, int]
    critical_needs: frozenset[Need]
    classes: tuple[tuple[str, int], ...]
    first_contact: dict[Urgency, timedelta]
    resolution: dict[Urgency, timedelta]
    class_first_contact_cap: dict[str, timedelta]
    ack_window: dict[str, timedelta]


@dataclass(frozen=True)
class Triage:
    priority: str
    score: int
    factors: tuple[str, ...]
    first_contact_due: datetime
    resolution_due: datetime
    ack_window: timedelta


def triage(facts: CaseFacts, rules: TriageRules) -> Triage:
    factors = [f"urgency_{facts.urgency.value}"]
    if facts.disability_grade <= 2:
        factors.append("severe_grade")
    if facts.lives_alone and not facts.has_carer:
        factors.append("alone_without_carer")
    if facts.household_disabled_count >= 2:
        factors.append("several_disabled")
    if facts.low_income:
        factors.append("low_income")
    if facts.need in rules.critical_needs:
        factors.append("critical_need")
    score = sum(rules.points.get(f, 0) for f in factors)
    priority = next(name for name, floor in rules.classes if score >= floor)
    start = facts.received_at
    first_contact = rules.first_contact[facts.urgency]
    if priority in rules.class_first_contact_cap:
        first_contact = min(first_contact, rules.class_first_contact_cap[priority])
    return Triage(
        priority=priority,
        score=score,
        factors=tuple(f for f in factors if rules.points.get(f, 0) > 0),
        first_contact_due=start + first_contact,
        resolution_due=start + max(rules.resolution[facts.urgency], first_contact),
        ack_window=rules.ack_window[priority],
    )
