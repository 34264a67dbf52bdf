"""Who should go: eligibility and ranking as pure functions, no I/O.

A case climbs a ladder of rungs until someone accepts: the person's paired cadre and nearby
volunteers; volunteers again with every travel radius widened once; community workers (and the
cadre, if not yet asked); agencies serving the need there; finally the duty desk.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.contracts import CaseFacts, DisabilityCategory, HelperKind, Need
from shared.storage import Document

from .policy import Policy

LOCAL_TIME = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True, slots=True)
class Window:
    """Weekly availability: ISO weekdays and minutes since local midnight."""

    days: frozenset[int]
    start: int
    end: int

    def contains(self, local: datetime) -> bool:
        return self.covers(local.isoweekday(), local.hour * 60 + local.minute)

    def covers(self, weekday: int, minute: int) -> bool:
        if weekday not in self.days:
            return False
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def week_minute(now: datetime) -> tuple[int, int]:
    """ISO weekday and minute of the day in Asia/Shanghai."""
    local = now.astimezone(LOCAL_TIME)
    return local.isoweekday(), local.hour * 60 + local.minute


def on_duty(hours: tuple[Window, ...], now: datetime) -> bool:
    """Within one of the weekly windows (Asia/Shanghai); no windows means any time."""
    return not hours or _on_duty_at(hours, *week_minute(now))


def _on_duty_at(hours: tuple[Window, ...], weekday: int, minute: int) -> bool:
    for window in hours:
        if window.covers(weekday, minute):
            return True
    return not hours


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True, slots=True)
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
        return on_duty(self.hours, now)

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


@dataclass(frozen=True, slots=True)
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
    considered: int = 0  # helpers examined (a nearest-first search stops once none can rank)


EARTH_RADIUS_KM = 6371.0088


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance."""
    return distance_from(lat1, lon1)(lat2, lon2)


def distance_from(lat: float, lon: float) -> Callable[[float, float], float]:
    """Haversine distances from one point, with its part worked out once."""
    p1, l1 = math.radians(lat), math.radians(lon)
    cos_p1 = math.cos(p1)
    sin, cos, asin, sqrt, radians = math.sin, math.cos, math.asin, math.sqrt, math.radians

    def distance(lat2: float, lon2: float) -> float:
        p2 = radians(lat2)
        a = sin((p2 - p1) / 2) ** 2 + cos_p1 * cos(p2) * sin((radians(lon2) - l1) / 2) ** 2
        return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(a)))

    return distance


def jurisdiction_prefix(served: str) -> str:
    """The code prefix a jurisdiction covers: `420100` (a city) -> `4201`, `420000` -> `42`."""
    prefix = served
    while len(prefix) > 2 and prefix.endswith("00") and len(prefix) <= 6:
        prefix = prefix[:-2]
    return prefix


def covers(served: str, division: str) -> bool:
    """Whether a jurisdiction code covers a division: `420100` (a city) covers `420103001`."""
    return division.startswith(jurisdiction_prefix(served))


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
    helper: Helper, facts: CaseFacts, skills: frozenset[str], at: tuple[int, int]
) -> Exclusion | None:
    if not helper.active:
        return Exclusion.inactive
    if helper.needs and facts.need not in helper.needs:
        return Exclusion.need_not_served
    if not skills <= helper.skills:
        return Exclusion.missing_skill
    if not helper.has_capacity:
        return Exclusion.at_capacity
    if helper.hours and not _on_duty_at(helper.hours, *at):
        return Exclusion.off_duty
    return None


def field_score(helper: Helper, d: float, policy: Policy) -> float:
    """Near, lightly loaded and reliable helpers first; spreads work away from the centre."""
    return field_scorer(policy)(helper, d)


def field_scorer(policy: Policy) -> Callable[[Helper, float], float]:
    r = policy.ranking
    w_distance, scale, w_load, w_ack = r.distance, r.distance_scale_km, r.load, r.acknowledgement

    def score(helper: Helper, d: float) -> float:
        nearness = 1.0 - d / scale if d < scale else 0.0
        spare = 1.0 - helper.load / helper.capacity if helper.capacity else 0.0
        ack_rate = (helper.accepts + 1) / (helper.offers + 2)  # Helper.ack_rate
        return round(w_distance * nearness + w_load * spare + w_ack * ack_rate, 4)

    return score


def beyond_reach_of(score: float, policy: Policy) -> float:
    """The distance past which no helper can score above `score`, even one idle and always
    accepting (allowing for the rounding of scores); infinite if distance alone cannot tell."""
    r = policy.ranking
    rest = score - r.load - r.acknowledgement - 1e-4
    if rest <= 0 or r.distance <= 0:
        return math.inf
    return r.distance_scale_km * (1.0 - rest / r.distance)


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
    nearest_first: bool = False,
) -> Decision:
    """Rank who may serve this case on one rung of the ladder.

    With `nearest_first`, volunteers (other than the person's previous helper) arrive nearest
    first, and the search stops at the first one too far to beat the `max_candidates` best
    found so far; the ranking is the same as a full scan, exclusions are those of the nearer
    helpers examined.
    """
    kinds = set(policy.kinds_for_need[facts.need])
    skills = required_skills(facts, policy)
    widen = policy.widen_factor if rung is Rung.field_widened else 1.0
    volunteers = _RUNG_KINDS.get(rung) is HelperKind.volunteer and HelperKind.volunteer in kinds
    at = week_minute(now)
    distance, score_of = distance_from(facts.lat, facts.lon), field_scorer(policy)
    volunteer, previous = HelperKind.volunteer, person.previous_helper_id
    ranked: list[Candidate] = []
    nearby: list[tuple[float, float, str, Helper]] = []  # made Candidates only if they rank
    excluded: list[tuple[str, Exclusion]] = []
    best: list[float] = []  # the `max_candidates` best nearby scores, as a min-heap
    stop_beyond = math.inf
    considered = 0

    def exclude(helper: Helper, reason: Exclusion) -> None:
        if reason not in QUIET_EXCLUSIONS:
            excluded.append((helper.id, reason))

    for helper in helpers:
        if helper.kind is volunteer and helper.id != previous:
            # The common case, kept lean: a volunteer found by where they live.
            if not volunteers:
                continue
            if helper.lat is None or helper.lon is None:
                considered += 1
                exclude(helper, Exclusion.no_location)
                continue
            d = distance(helper.lat, helper.lon)
            if nearest_first and d > stop_beyond:
                break
            considered += 1
            if helper.id in offered:
                reason: Exclusion | None = Exclusion.already_offered
            elif d > helper.radius_km * widen:
                reason = Exclusion.out_of_range
            else:
                reason = _personal_exclusion(helper, facts, skills, at)
            if reason is not None:
                exclude(helper, reason)
                continue
            score = score_of(helper, d)
            if len(best) < max_candidates or score >= best[0]:
                nearby.append((-score, d, helper.id, helper))
            if len(best) < max_candidates:
                heapq.heappush(best, score)
            elif score > best[0]:
                heapq.heapreplace(best, score)
            else:
                continue
            if len(best) == max_candidates:
                stop_beyond = beyond_reach_of(best[0], policy)
            continue
        paired = helper.kind is HelperKind.paired_cadre and helper.id in person.paired_cadre_ids
        if not _on_rung(helper, rung, paired, kinds):
            continue
        considered += 1
        if helper.id in offered:
            exclude(helper, Exclusion.already_offered)
            continue
        if helper.kind is HelperKind.agency:
            agency_skills: frozenset[str] = frozenset()  # an agency sends whoever is suitable
            reason = _personal_exclusion(helper, facts, agency_skills, at)
            if reason is None and jurisdiction_depth(helper, facts.division_code) == 0:
                reason = Exclusion.outside_jurisdiction
            if reason is None:
                score = float(jurisdiction_depth(helper, facts.division_code))
                ranked.append(Candidate(helper, score, Basis.jurisdiction))
            else:
                exclude(helper, reason)
            continue
        d = 0.0
        if helper.kind is HelperKind.volunteer:  # the person's previous helper
            if helper.lat is None or helper.lon is None:
                exclude(helper, Exclusion.no_location)
                continue
            d = distance_km(facts.lat, facts.lon, helper.lat, helper.lon)
            if d > helper.radius_km * widen:
                exclude(helper, Exclusion.out_of_range)
                continue
        reason = _personal_exclusion(helper, facts, skills, at)
        if reason is not None:
            exclude(helper, reason)
        elif paired:
            ranked.append(Candidate(helper, math.inf, Basis.paired_cadre))
        elif helper.kind is HelperKind.community_worker:
            if jurisdiction_depth(helper, facts.division_code) == 0:
                exclude(helper, Exclusion.outside_jurisdiction)
            else:
                score = _local_score(helper, facts.division_code)
                ranked.append(Candidate(helper, score, Basis.jurisdiction))
        else:
            ranked.append(Candidate(helper, math.inf, Basis.previous_helper, round(d, 3)))
    ranked.sort(key=_rank_key)
    if len(ranked) < max_candidates:
        top = heapq.nsmallest(max_candidates - len(ranked), nearby)
        ranked += [Candidate(h, -s, Basis.nearby, round(d, 3)) for s, d, _, h in top]
    return Decision(rung, tuple(ranked[:max_candidates]), tuple(excluded), skills, considered)


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
