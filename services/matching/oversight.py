"""What a duty officer watches: open cases by status and priority, and those nobody has taken
on past their first-contact deadline. Pure: counts case summaries read from the store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.storage import Document

# A case counts as contacted once a helper has accepted it (they then have the address and
# the number) or it is resolved; until then its first-contact deadline runs.
AWAITING_CONTACT = frozenset({"received", "assigned", "escalated"})
NO_PRIORITY = "none"


@dataclass(frozen=True)
class Tally:
    open: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, priority)
    overdue: Counter[str] = field(default_factory=Counter)  # priority


def tally_open_cases(cases: Iterable[Document], now: datetime) -> Tally:
    tally = Tally()
    for case in cases:
        triage = case.get("triage") or {}
        priority = str(triage.get("priority") or NO_PRIORITY)
        tally.open[(case["status"], priority)] += 1
        due = triage.get("first_contact_due")
        if case["status"] in AWAITING_CONTACT and due is not None and due < now:
            tally.overdue[priority] += 1
    return tally
