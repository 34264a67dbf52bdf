"""Who should go: eligibility and ranking as pure functions, no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from shared.contracts import CaseFacts, DisabilityCategory, HelperKind, Need
from shared.storage import Document

from .policy import Policy


@dataclass(frozen=True)
class Helper:
    """A snapshot of one registry entry, as the in-process index holds it."""

    id: str
    kind: HelperKind
    name: str
    active: bool = True
    lat: float | None = None
    lon: float | None = None
    radius_km: float = 5.0
    capacity: int = 3
    load: int = 0
    skills: frozenset[str] = frozenset()
    needs: frozenset[Need] = frozenset()
    divisions: tuple[str, ...] = ()

    @property
    def has_capacity(self) -> bool:
        return self.load < self.capacity

    @classmethod
    def of(cls, doc: Document) -> Helper:
        return cls(
            id=doc["_id"],
            kind=HelperKind(doc["kind"]),
            name=doc["name"],
            active=doc.get("active", True),
            lat=doc.get("lat"),
            lon=doc.get("lon"),
            radius_km=doc.get("radius_km", 5.0),
            capacity=doc.get("capacity", 0),
            load=doc.get("load", 0),
            skills=frozenset(doc.get("skills", ())),
            needs=frozenset(Need(n) for n in doc.get("needs", ())),
            divisions=tuple(doc.get("divisions", ())),
        )


class Exclusion(StrEnum):
    inactive = "inactive"
    need_not_served = "need_not_served"
    out_of_range = "out_of_range"
    at_capacity = "at_capacity"
    missing_skill = "missing_skill"
    outside_jurisdiction = "outside_jurisdiction"
    no_location = "no_location"


class Outcome(StrEnum):
    assign = "assign"
    escalate = "escalate"


@dataclass(frozen=True)
class Candidate:
    helper: Helper
    score: float
    distance_km: float | None = None


@dataclass(frozen=True)
class Decision:
    """The helpers to offer the case to, best first, and why the others were left out."""

    candidates: tuple[Candidate, ...]
    excluded: tuple[tuple[str, Exclusion], ...] = ()
    required_skills: frozenset[str] = field(default_factory=frozenset)


# Most of a city's helpers are far away or serve other needs; listing them would bury the
# reasons an operator needs to see (full, missing a skill, inactive, wrong jurisdiction).
QUIET_EXCLUSIONS = frozenset({Exclusion.out_of_range, Exclusion.need_not_served})

EARTH_RADIUS_KM = 6371.0088


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def covers(served: str, division: str) -> bool:
    """Whether a jurisdiction code covers a division: `420100` (a city) covers `420103001`."""
    prefix = served
    while len(prefix) > 2 and prefix.endswith("00") and len(prefix) <= 6:
        prefix = prefix[:-2]
    return division.startswith(prefix)


def jurisdiction_depth(helper: Helper, division: str) -> int:
    """How specific the helper's best matching jurisdiction is; 0 when none covers it."""
    return max((len(d.rstrip("0")) for d in helper.divisions if covers(d, division)), default=0)


def required_skills(facts: CaseFacts, policy: Policy) -> frozenset[str]:
    """Skills a helper who goes to this person must have (accommodations and the need itself)."""
    skills: set[str] = set()
    if facts.need in policy.need_skills:
        skills.add(policy.need_skills[facts.need])
    if facts.need in policy.accompanying_needs:
        category = facts.disability_category
        if category in policy.accommodation_skills:
            skills.add(policy.accommodation_skills[category])
        if (
            category in (DisabilityCategory.physical, DisabilityCategory.multiple)
            and facts.disability_grade in policy.wheelchair_grades
            and facts.need in policy.wheelchair_needs
        ):
            skills.add(policy.wheelchair_skill)
    return frozenset(skills)


def _field_exclusion(
    helper: Helper, facts: CaseFacts, skills: frozenset[str]
) -> tuple[Exclusion | None, float | None]:
    if not helper.active:
        return Exclusion.inactive, None
    if helper.needs and facts.need not in helper.needs:
        return Exclusion.need_not_served, None
    if not skills <= helper.skills:
        return Exclusion.missing_skill, None
    if helper.lat is None or helper.lon is None:
        return Exclusion.no_location, None
    d = distance_km(facts.lat, facts.lon, helper.lat, helper.lon)
    if d > helper.radius_km:
        return Exclusion.out_of_range, d
    if not helper.has_capacity:
        return Exclusion.at_capacity, d
    return None, d


def _agency_exclusion(helper: Helper, facts: CaseFacts) -> Exclusion | None:
    if not helper.active:
        return Exclusion.inactive
    if helper.needs and facts.need not in helper.needs:
        return Exclusion.need_not_served
    if jurisdiction_depth(helper, facts.division_code) == 0:
        return Exclusion.outside_jurisdiction
    if not helper.has_capacity:
        return Exclusion.at_capacity
    return None


def field_score(d: float, radius_km: float) -> float:
    """1.0 at the person's door, falling to 0 at the edge of the helper's travel radius."""
    return round(1.0 - d / radius_km, 4) if radius_km > 0 else 0.0


def decide(
    facts: CaseFacts,
    helpers: Iterable[Helper],
    policy: Policy,
    max_candidates: int = 10,
) -> Decision:
    """Rank who may serve this case: field helpers nearest first, then agencies, in the order
    the policy lists helper kinds for the need."""
    kinds = policy.kinds_for_need[facts.need]
    skills = required_skills(facts, policy)
    by_kind: dict[HelperKind, list[Candidate]] = {k: [] for k in kinds}
    excluded: list[tuple[str, Exclusion]] = []
    for helper in helpers:
        if helper.kind not in by_kind:
            continue
        if helper.kind is HelperKind.agency:
            reason = _agency_exclusion(helper, facts)
            if reason is None:
                depth = jurisdiction_depth(helper, facts.division_code)
                by_kind[helper.kind].append(Candidate(helper, float(depth)))
            elif reason not in QUIET_EXCLUSIONS:
                excluded.append((helper.id, reason))
            continue
        reason, d = _field_exclusion(helper, facts, skills)
        if reason is None and d is not None:
            by_kind[helper.kind].append(
                Candidate(helper, field_score(d, helper.radius_km), round(d, 3))
            )
        elif reason is not None and reason not in QUIET_EXCLUSIONS:
            excluded.append((helper.id, reason))
    ranked: list[Candidate] = []
    for kind in kinds:
        ranked.extend(sorted(by_kind[kind], key=_rank_key))
    return Decision(tuple(ranked[:max_candidates]), tuple(excluded), skills)


def _rank_key(c: Candidate) -> tuple[float, float, str]:
    if c.distance_km is None:
        return (-c.score, 0.0, c.helper.id)
    return (c.distance_km, c.helper.load, c.helper.id)


def duty_desk_for(division: str, helpers: Sequence[Helper]) -> Helper | None:
    """The most local duty desk whose jurisdiction covers the division, or any duty desk."""
    desks = [h for h in helpers if h.kind is HelperKind.duty_desk and h.active]
    if not desks:
        return None
    return max(desks, key=lambda h: (jurisdiction_depth(h, division), h.id))
