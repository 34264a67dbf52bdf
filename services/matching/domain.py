"""Who should go: eligibility and ranking as pure functions, no I/O.

A case climbs a ladder of rungs until someone accepts: the person's paired cadre and nearby
volunteers; volunteers again with every travel radius widened once; community workers (and the
cadre, if not yet asked); agencies serving the need there; finally the duty desk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.contracts import CaseFacts, DisabilityCategory, HelperKind, Need
from shared.storage import Document

from .policy import Policy

LOCAL_TIME = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Window:
    """Weekly availability: ISO weekdays and minutes since local midnight."""

    days: frozenset[int]
    start: int
    end: int

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        if self.start <= self.end:
            return local.isoweekday() in self.days and self.start <= minute < self.end
        return local.isoweekday() in self.days and (minute >= self.start or minute < self.end)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


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
    hours: tuple[Window, ...] = ()
    offers: int = 0
    accepts: int = 0

    @property
    def has_capacity(self) -> bool:
        return self.load < self.capacity

    @property
    def ack_rate(self) -> float:
        """Share of offers accepted, smoothed so a newcomer starts at one half."""
        return (self.accepts + 1) / (self.offers + 2)

    def available_at(self, now: datetime) -> bool:
        if not self.hours:
            return True
        local = now.astimezone(LOCAL_TIME)
        return any(window.contains(local) for window in self.hours)

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
            hours=tuple(
                Window(frozenset(h["days"]), _minutes(h["start"]), _minutes(h["end"]))
                for h in doc.get("hours", ())
            ),
            offers=doc.get("offers", 0),
            accepts=doc.get("accepts", 0),
        )


class Exclusion(StrEnum):
    inactive = "inactive"
    need_not_served = "need_not_served"
    out_of_range = "out_of_range"
    at_capacity = "at_capacity"
    missing_skill = "missing_skill"
    off_duty = "off_duty"
    outside_jurisdiction = "outside_jurisdiction"
    no_location = "no_location"
    already_offered = "already_offered"


# Most of a city's helpers are far away or serve other needs; listing them would bury the
# reasons an operator needs to see (full, missing a skill, off duty, already asked).
QUIET_EXCLUSIONS = frozenset({Exclusion.out_of_range, Exclusion.need_not_served})


class Rung(StrEnum):
    field = "field"
    field_widened = "field_widened"
    local = "local"
    agency = "agency"
    duty_desk = "duty_desk"


LADDER = tuple(Rung)


class Basis(StrEnum):
    paired_cadre = "paired_cadre"
    previous_helper = "previous_helper"
    nearby = "nearby"
    jurisdiction = "jurisdiction"


@dataclass(frozen=True)
class Person:
    """What the system remembers about the person: only links, by keyed hash."""

    paired_cadre_ids: frozenset[str] = frozenset()
    previous_helper_id: str | None = None


@dataclass(frozen=True)
class Candidate:
    helper: Helper
    score: float
    basis: Basis
    distance_km: float | None = None


@dataclass(frozen=True)
class Decision:
    """The helpers to offer the case to on one rung, best first, and why others were left out."""

    rung: Rung
    candidates: tuple[Candidate, ...]
    excluded: tuple[tuple[str, Exclusion], ...] = ()
    required_skills: frozenset[str] = field(default_factory=frozenset)


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


def contact_via_carer(facts: CaseFacts, policy: Policy) -> bool:
    """Intellectual or mental disability: contact goes through the carer, when there is one."""
    return facts.has_carer and facts.disability_category in policy.carer_contact_categories


def rungs_for(need: Need, policy: Policy) -> tuple[Rung, ...]:
    kinds = set(policy.kinds_for_need[need])
    rungs = []
    if kinds & {HelperKind.volunteer, HelperKind.paired_cadre}:
        rungs.append(Rung.field)
    if HelperKind.volunteer in kinds:
        rungs.append(Rung.field_widened)
    if kinds & {HelperKind.community_worker, HelperKind.paired_cadre}:
        rungs.append(Rung.local)
    if HelperKind.agency in kinds:
        rungs.append(Rung.agency)
    return (*rungs, Rung.duty_desk)


def _personal_exclusion(
    helper: Helper, facts: CaseFacts, skills: frozenset[str], now: datetime
) -> Exclusion | None:
    if not helper.active:
        return Exclusion.inactive
    if helper.needs and facts.need not in helper.needs:
        return Exclusion.need_not_served
    if not skills <= helper.skills:
        return Exclusion.missing_skill
    if not helper.has_capacity:
        return Exclusion.at_capacity
    if not helper.available_at(now):
        return Exclusion.off_duty
    return None


def field_score(helper: Helper, d: float, policy: Policy) -> float:
    """Near, lightly loaded and reliable helpers first; spreads work away from the centre."""
    r = policy.ranking
    nearness = max(0.0, 1.0 - d / r.distance_scale_km)
    spare = 1.0 - helper.load / helper.capacity if helper.capacity else 0.0
    score = r.distance * nearness + r.load * spare + r.acknowledgement * helper.ack_rate
    return round(score, 4)


def _local_score(helper: Helper, division: str) -> float:
    spare = 1.0 - helper.load / helper.capacity if helper.capacity else 0.0
    return round(jurisdiction_depth(helper, division) + spare, 4)


def decide(
    facts: CaseFacts,
    helpers: Iterable[Helper],
    policy: Policy,
    now: datetime,
    rung: Rung = Rung.field,
    person: Person = Person(),
    offered: frozenset[str] = frozenset(),
    max_candidates: int = 10,
) -> Decision:
    """Rank who may serve this case on one rung of the ladder."""
    kinds = set(policy.kinds_for_need[facts.need])
    skills = required_skills(facts, policy)
    widen = policy.widen_factor if rung is Rung.field_widened else 1.0
    ranked: list[Candidate] = []
    excluded: list[tuple[str, Exclusion]] = []

    def exclude(helper: Helper, reason: Exclusion) -> None:
        if reason not in QUIET_EXCLUSIONS:
            excluded.append((helper.id, reason))

    for helper in helpers:
        paired = helper.kind is HelperKind.paired_cadre and helper.id in person.paired_cadre_ids
        if not _on_rung(helper, rung, paired, kinds):
            continue
        if helper.id in offered:
            exclude(helper, Exclusion.already_offered)
            continue
        if helper.kind is HelperKind.agency:
            agency_skills: frozenset[str] = frozenset()  # an agency sends whoever is suitable
            reason = _personal_exclusion(helper, facts, agency_skills, now)
            if reason is None and jurisdiction_depth(helper, facts.division_code) == 0:
                reason = Exclusion.outside_jurisdiction
            if reason is None:
                score = float(jurisdiction_depth(helper, facts.division_code))
                ranked.append(Candidate(helper, score, Basis.jurisdiction))
            else:
                exclude(helper, reason)
            continue
        reason = _personal_exclusion(helper, facts, skills, now)
        if reason is not None:
            exclude(helper, reason)
            continue
        if paired:
            ranked.append(Candidate(helper, math.inf, Basis.paired_cadre))
            continue
        if helper.kind is HelperKind.community_worker:
            if jurisdiction_depth(helper, facts.division_code) == 0:
                exclude(helper, Exclusion.outside_jurisdiction)
            else:
                score = _local_score(helper, facts.division_code)
                ranked.append(Candidate(helper, score, Basis.jurisdiction))
            continue
        if helper.lat is None or helper.lon is None:
            exclude(helper, Exclusion.no_location)
            continue
        d = distance_km(facts.lat, facts.lon, helper.lat, helper.lon)
        if d > helper.radius_km * widen:
            exclude(helper, Exclusion.out_of_range)
            continue
        if helper.id == person.previous_helper_id:
            ranked.append(Candidate(helper, math.inf, Basis.previous_helper, round(d, 3)))
        else:
            ranked.append(
                Candidate(helper, field_score(helper, d, policy), Basis.nearby, round(d, 3))
            )
    ranked.sort(key=_rank_key)
    return Decision(rung, tuple(ranked[:max_candidates]), tuple(excluded), skills)


_RUNG_KINDS = {
    Rung.field: HelperKind.volunteer,
    Rung.field_widened: HelperKind.volunteer,
    Rung.local: HelperKind.community_worker,
    Rung.agency: HelperKind.agency,
}


def _on_rung(helper: Helper, rung: Rung, paired: bool, kinds: set[HelperKind]) -> bool:
    if paired:
        return rung in (Rung.field, Rung.local) and HelperKind.paired_cadre in kinds
    return helper.kind in kinds and _RUNG_KINDS.get(rung) is helper.kind


_BASIS_ORDER = {
    Basis.paired_cadre: 0,
    Basis.previous_helper: 1,
    Basis.nearby: 2,
    Basis.jurisdiction: 2,
}


def _rank_key(c: Candidate) -> tuple[int, float, float, str]:
    distance = c.distance_km if c.distance_km is not None else 0.0
    return (_BASIS_ORDER[c.basis], -c.score, distance, c.helper.id)


def duty_desk_for(division: str, helpers: Sequence[Helper]) -> Helper | None:
    """The most local duty desk whose jurisdiction covers the division, or any duty desk."""
    desks = [h for h in helpers if h.kind is HelperKind.duty_desk and h.active]
    if not desks:
        return None
    return max(desks, key=lambda h: (jurisdiction_depth(h, division), h.id))
