"""The in-process view of the registry, so candidate search never scans the database or every
helper: volunteers in a grid of cells by where they live (cells sized to the registry's
density, 0.5-5 km), searched ring by ring outwards and handed over nearest first; everyone
else by id or by the division codes they serve. Kept current from registry changes and from
this replica's own claims.

Hand-written (a uniform lat/lon grid over numpy arrays) because loads change on every claim
and must be updated in place, and the search has to hand helpers over nearest first so the
ranking can stop early; shapely's STRtree is immutable once built and H3 would add a native
dependency for the same cell lookups.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from shared.contracts import CaseFacts, HelperKind, Need
from shared.storage import Document

from .domain import (
    EARTH_RADIUS_KM,
    Helper,
    Person,
    Rung,
    Window,
    jurisdiction_prefix,
    on_duty,
    required_skills,
)
from .policy import Policy

Floats = npt.NDArray[np.float64]
Slots = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180
DIVISION_LENGTHS = (2, 4, 6, 9, 12)
NEED_BITS = {need: 1 << n for n, need in enumerate(Need)}
_OFFSET = 1 << 20  # keeps cell rows and columns positive inside one integer key
# Of the helpers in reach whom the ranking would pass over anyway (inactive, full, off duty,
# without a needed skill), the nearest few are still handed over so it can say why.
KEEP_PASSED_OVER = 20
PER_CELL = 32  # volunteers in an average cell: fewer cells to visit vs fewer helpers to sort


def _cell_key(row: int, col: int) -> int:
    return ((row + _OFFSET) << 22) | (col + _OFFSET)


@functools.cache
def _rings(first: int, last: int) -> tuple[int, ...]:
    """Key offsets of the cells at Chebyshev distance first..last-1 from a cell (a key is
    row * 2**22 + column, so moving a cell is adding to the key)."""
    offsets = []
    for k in range(first, last):
        if k == 0:
            offsets.append(0)
            continue
        for c in range(-k, k + 1):
            offsets += [(-k << 22) + c, (k << 22) + c]
        for r in range(-k + 1, k):
            offsets += [(r << 22) - k, (r << 22) + k]
    return tuple(offsets)


class HelperIndex:
    def __init__(self, cell_km: float | None = None) -> None:
        """`cell_km` fixes the grid; by default each build sizes cells to the registry's density
        (about PER_CELL volunteers each, between 0.5 and 5 km)."""
        self._fixed_cell_km = cell_km
        self._set_cell(cell_km or 1.0)
        self._people: frozenset[str] = frozenset()
        self._reset()

    def _set_cell(self, cell_km: float) -> None:
        self._cell_km = cell_km
        self._cell_deg = cell_km / KM_PER_DEGREE

    def _reset(self) -> None:
        self._helpers: list[Helper] = []
        self._slots: dict[str, int] = {}
        self._lat: Floats = np.zeros(0)
        self._lon: Floats = np.zeros(0)
        # where each lives, as a unit vector from the earth's centre
        self._x: Floats = np.zeros(0)
        self._y: Floats = np.zeros(0)
        self._z: Floats = np.zeros(0)
        self._radius: Floats = np.zeros(0)
        self._open: Mask = np.zeros(0, dtype=bool)
        self._skills: Slots = np.zeros(0, dtype=np.int64)
        self._needs: Slots = np.zeros(0, dtype=np.int64)
        self._hours: Slots = np.zeros(0, dtype=np.int64)
        self._skill_bits: dict[str, int] = {}
        self._patterns: list[tuple[Window, ...]] = [()]
        self._pattern_ids: dict[tuple[Window, ...], int] = {(): 0}
        self._duty: tuple[tuple[int, int], Mask] | None = None
        self._cells: dict[int, Slots] = {}
        self._cell_of: dict[int, int] = {}  # slot -> cell key, for volunteers with a location
        self._furthest = 0.0  # the longest travel radius of anyone in the grid
        self._serving: dict[str, list[str]] = {}  # division prefix -> helper ids
        self._desks: list[str] = []

    # ------------------------------------------------------------------ keeping it current

    def replace_all(self, documents: Iterable[Document]) -> None:
        self.build(Helper.of(doc) for doc in documents)

    def build(self, helpers: Iterable[Helper]) -> None:
        """Index a whole registry at once; neighbours get neighbouring slots, so a search reads
        memory mostly in runs."""
        self._reset()
        listed = list(helpers)
        lat = np.fromiter((h.lat or 0.0 for h in listed), np.float64, len(listed))
        lon = np.fromiter((h.lon or 0.0 for h in listed), np.float64, len(listed))
        located = np.fromiter((_located(h) for h in listed), bool, len(listed))
        where = np.flatnonzero(located)
        self._set_cell(self._fixed_cell_km or self._cell_size(lat[where], lon[where]))
        keys = self._keys_of(lat[where], lon[where])
        order = np.argsort(keys, kind="stable")
        placed = np.concatenate([where[order], np.flatnonzero(~located)])
        self._helpers = [listed[i] for i in placed.tolist()]
        self._slots = {h.id: slot for slot, h in enumerate(self._helpers)}
        self._grow(len(self._helpers))
        for slot, helper in enumerate(self._helpers):
            self._set(slot, helper)
            self._file_divisions(helper)
        keys = keys[order]
        slots = np.arange(len(keys), dtype=np.int64)
        if len(keys):
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            parts = np.split(slots, starts[1:])
            self._cells = dict(zip(keys[starts].tolist(), parts, strict=True))
        self._cell_of = dict(zip(slots.tolist(), keys.tolist(), strict=True))
        self._furthest = float(self._radius[slots].max()) if len(slots) else 0.0

    def upsert(self, helper: Helper) -> None:
        """Add or change one helper (a registry change)."""
        slot = self._slots.get(helper.id)
        if slot is None:
            slot = len(self._helpers)
            self._helpers.append(helper)
            self._slots[helper.id] = slot
            self._grow(slot + 1)
        else:
            self._unfile(slot)
        self._set(slot, helper)
        self._file_divisions(helper)
        if _located(helper):
            key = int(self._keys(np.array([slot], dtype=np.int64))[0])
            self._cells[key] = np.append(self._cells.get(key, np.zeros(0, np.int64)), slot)
            self._cell_of[slot] = key
            self._furthest = max(self._furthest, helper.radius_km)

    def set_people(self, person_keys: Iterable[str]) -> None:
        """Person keys the store holds links for (a paired cadre, a previous helper)."""
        self._people = frozenset(person_keys)

    def remember_person(self, person_key: str) -> None:
        if person_key and person_key not in self._people:
            self._people = self._people | {person_key}

    def knows_person(self, person_key: str) -> bool:
        return person_key in self._people

    def adjust_load(self, helper_id: str, delta: int) -> None:
        slot = self._slots.get(helper_id)
        if slot is not None:
            helper = self._helpers[slot]
            self._set(slot, replace(helper, load=max(0, helper.load + delta)))

    def mark_full(self, helper_id: str) -> None:
        slot = self._slots.get(helper_id)
        if slot is not None:
            helper = self._helpers[slot]
            self._set(slot, replace(helper, load=helper.capacity))

    # ------------------------------------------------------------------ looking up

    def get(self, helper_id: str) -> Helper | None:
        slot = self._slots.get(helper_id)
        return None if slot is None else self._helpers[slot]

    def by_ids(self, helper_ids: Iterable[str]) -> list[Helper]:
        return [h for h in map(self.get, sorted(helper_ids)) if h is not None]

    def serving(self, division_code: str, kind: HelperKind) -> list[Helper]:
        """Helpers of this kind whose jurisdiction covers the division (a county's agency serves
        every township and village code under it)."""
        ids = {
            helper_id
            for length in DIVISION_LENGTHS
            if length <= len(division_code)
            for helper_id in self._serving.get(division_code[:length], ())
        }
        return [h for h in self.by_ids(ids) if h.kind is kind]

    def duty_desks(self) -> list[Helper]:
        return self.by_ids(self._desks)

    def pool(
        self, facts: CaseFacts, rung: Rung, person: Person, policy: Policy, now: datetime
    ) -> Iterator[Helper]:
        """Whom `decide()` should look at on this rung: the person's paired cadres and previous
        helper first, then the volunteers in reach nearest first, or those serving the area."""
        yield from self.by_ids(person.paired_cadre_ids)
        if rung in (Rung.field, Rung.field_widened):
            previous = person.previous_helper_id
            first = self.by_ids({previous} if previous else ())
            yield from first
            yield from self.nearby(
                facts.lat,
                facts.lon,
                policy.widen_factor if rung is Rung.field_widened else 1.0,
                skip=frozenset(h.id for h in first),
                skills=required_skills(facts, policy),
                need=facts.need,
                now=now,
            )
        elif rung is Rung.local:
            yield from self.serving(facts.division_code, HelperKind.community_worker)
        elif rung is Rung.agency:
            yield from self.serving(facts.division_code, HelperKind.agency)

    def nearby(
        self,
        lat: float,
        lon: float,
        widen: float = 1.0,
        *,
        skip: frozenset[str] = frozenset(),
        skills: frozenset[str] = frozenset(),
        need: Need | None = None,
        now: datetime | None = None,
    ) -> Iterator[Helper]:
        """Volunteers whose travel radius (times `widen`) reaches the point, nearest first.

        Those who could take the case (active, with capacity, on duty at `now`, serving `need`,
        having `skills`) all come; of the others only the nearest KEEP_PASSED_OVER, so the
        ranking can still say why they were passed over. Rings of cells are searched outwards
        until the consumer stops or nobody further out could reach the point.
        """
        if not self._cells:
            return
        wanted = self._skill_mask(skills)
        need_bit = NEED_BITS[need] if need is not None else 0
        duty = self._on_duty(now) if now is not None else None
        row, col = math.floor(lat / self._cell_deg), math.floor(lon / self._cell_deg)
        furthest = self._furthest * widen
        cos_lat = math.cos(math.radians(min(abs(lat), 89.0)))
        px, py, pz = _unit(lat, lon)
        # Closeness is the cosine of the angle between home and the point: 1 is here, and it
        # falls as distance grows, so comparing it needs no trigonometry per helper.
        pending = np.zeros(0, dtype=np.int64)
        pending_close: Floats = np.zeros(0)
        pending_fits: Mask = np.zeros(0, dtype=bool)
        passed_over = 0
        k = 0
        home = _cell_key(row, col)
        cells = self._cells
        while True:
            # The first three rings at once (most searches end there), then wider bands.
            step = 3 if k == 0 else max(1, k // 2)
            parts = [
                cell
                for offset in _rings(k, k + step)
                if (cell := cells.get(home + offset)) is not None
            ]
            if parts:
                found = np.concatenate(parts)
                fits = self._open[found]
                if wanted:
                    fits &= (self._skills[found] & wanted) == wanted
                if need_bit:
                    needs = self._needs[found]
                    fits &= (needs == 0) | ((needs & need_bit) != 0)
                if duty is not None:
                    fits &= duty[self._hours[found]]
                if passed_over >= KEEP_PASSED_OVER:  # no more of them to show
                    found, fits = found[fits], fits[fits]
                close = self._x[found] * px + self._y[found] * py + self._z[found] * pz
                reach = np.minimum(np.pi, self._radius[found] * (widen / EARTH_RADIUS_KM))
                within = close >= np.cos(reach) - 1e-12
                pending = np.concatenate([pending, found[within]])
                pending_close = np.concatenate([pending_close, close[within]])
                pending_fits = np.concatenate([pending_fits, fits[within]])
            k += step
            covered = self._covered(k, cos_lat)
            done = covered > furthest + 1e-6
            if done:
                ready = np.ones(len(pending), dtype=bool)
            else:
                ready = pending_close >= math.cos(covered / EARTH_RADIUS_KM)
            if ready.any():
                slots, close, fits = pending[ready], pending_close[ready], pending_fits[ready]
                pending, pending_close = pending[~ready], pending_close[~ready]
                pending_fits = pending_fits[~ready]
                for order in _nearest_first(close):
                    chunk, chunk_fits = slots[order], fits[order]
                    passed = np.cumsum(~chunk_fits) + passed_over
                    keep = chunk_fits | (passed <= KEEP_PASSED_OVER)
                    passed_over = min(KEEP_PASSED_OVER, int(passed[-1]))
                    for slot in chunk[keep].tolist():
                        helper = self._helpers[slot]
                        if helper.id not in skip:
                            yield helper
            if done:
                return

    def __len__(self) -> int:
        return len(self._slots)

    # ------------------------------------------------------------------ inside

    def _covered(self, rings: int, cos_lat: float) -> float:
        """Kilometres around the point certainly searched once `rings` rings are done (the
        point may sit anywhere in its own cell; east-west cells are narrower by cos(lat))."""
        if rings <= 1:
            return 0.0
        angle = math.radians((rings - 1) * self._cell_deg)
        east_west = EARTH_RADIUS_KM * math.asin(min(1.0, math.sin(angle) * cos_lat))
        return 0.999 * min((rings - 1) * self._cell_km, east_west)

    def _keys(self, slots: Slots) -> Slots:
        return self._keys_of(self._lat[slots], self._lon[slots])

    def _keys_of(self, lat: Floats, lon: Floats) -> Slots:
        rows = np.floor(lat / self._cell_deg).astype(np.int64)
        cols = np.floor(lon / self._cell_deg).astype(np.int64)
        keys: Slots = ((rows + _OFFSET) << 22) | (cols + _OFFSET)
        return keys

    @staticmethod
    def _cell_size(lat: Floats, lon: Floats) -> float:
        if len(lat) < 2:
            return 1.0
        north_south = float(np.ptp(lat)) * KM_PER_DEGREE
        east_west = float(np.ptp(lon)) * KM_PER_DEGREE * math.cos(math.radians(float(lat.mean())))
        area = max(1.0, north_south) * max(1.0, east_west)
        return min(5.0, max(0.5, math.sqrt(PER_CELL * area / len(lat))))

    def _skill_mask(self, skills: Iterable[str]) -> int:
        mask = 0
        for skill in skills:
            mask |= self._skill_bit(skill)
        return mask

    def _skill_bit(self, skill: str) -> int:
        """A bit per skill; past 62 skills the rest are not screened here (the ranking still
        checks them)."""
        if skill not in self._skill_bits:
            n = len(self._skill_bits)
            self._skill_bits[skill] = 1 << n if n < 62 else 0
        return self._skill_bits[skill]

    def _pattern(self, hours: tuple[Window, ...]) -> int:
        if hours not in self._pattern_ids:
            self._pattern_ids[hours] = len(self._patterns)
            self._patterns.append(hours)
        return self._pattern_ids[hours]

    def _on_duty(self, now: datetime) -> Mask:
        """Which weekly-hours patterns are on duty now; registries share a few dozen patterns,
        so this is worked out once a minute, not once per helper."""
        stamp = (int(now.timestamp()) // 60, len(self._patterns))
        if self._duty is None or self._duty[0] != stamp:
            table = np.fromiter(
                (on_duty(p, now) for p in self._patterns), bool, len(self._patterns)
            )
            self._duty = (stamp, table)
        return self._duty[1]

    def _set(self, slot: int, helper: Helper) -> None:
        self._helpers[slot] = helper
        self._lat[slot] = helper.lat or 0.0
        self._lon[slot] = helper.lon or 0.0
        self._x[slot], self._y[slot], self._z[slot] = _unit(helper.lat or 0.0, helper.lon or 0.0)
        self._radius[slot] = helper.radius_km
        self._open[slot] = helper.active and helper.has_capacity
        self._skills[slot] = self._skill_mask(helper.skills)
        self._needs[slot] = sum(NEED_BITS[n] for n in helper.needs)
        self._hours[slot] = self._pattern(helper.hours)

    def _grow(self, size: int) -> None:
        if size <= len(self._lat):
            return
        extra = max(size, 2 * len(self._lat)) - len(self._lat)
        self._lat = np.concatenate([self._lat, np.zeros(extra)])
        self._lon = np.concatenate([self._lon, np.zeros(extra)])
        self._x = np.concatenate([self._x, np.zeros(extra)])
        self._y = np.concatenate([self._y, np.zeros(extra)])
        self._z = np.concatenate([self._z, np.zeros(extra)])
        self._radius = np.concatenate([self._radius, np.zeros(extra)])
        self._open = np.concatenate([self._open, np.zeros(extra, dtype=bool)])
        self._skills = np.concatenate([self._skills, np.zeros(extra, dtype=np.int64)])
        self._needs = np.concatenate([self._needs, np.zeros(extra, dtype=np.int64)])
        self._hours = np.concatenate([self._hours, np.zeros(extra, dtype=np.int64)])

    def _unfile(self, slot: int) -> None:
        key = self._cell_of.pop(slot, None)
        if key is not None:
            cell = self._cells[key]
            self._cells[key] = cell[cell != slot]
        old = self._helpers[slot]
        if old.id in self._desks:
            self._desks.remove(old.id)
        for prefix in {jurisdiction_prefix(d) for d in old.divisions}:
            ids = self._serving.get(prefix, [])
            if old.id in ids:
                ids.remove(old.id)

    def _file_divisions(self, helper: Helper) -> None:
        if helper.kind is HelperKind.duty_desk:
            self._desks.append(helper.id)
        if helper.kind is HelperKind.volunteer:
            return
        for prefix in {jurisdiction_prefix(d) for d in helper.divisions}:
            self._serving.setdefault(prefix, []).append(helper.id)


def _located(helper: Helper) -> bool:
    return helper.kind is HelperKind.volunteer and helper.lat is not None and helper.lon is not None


def _unit(lat: float, lon: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lon)
    return math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)


def _nearest_first(closeness: Floats, first: int = 64) -> Iterator[Slots]:
    """Positions in order of closeness, the nearest `first` sorted before the rest (a ranking
    usually stops within them)."""
    if len(closeness) <= 2 * first:
        yield np.argsort(-closeness, kind="stable")
        return
    part = np.argpartition(-closeness, first - 1)
    head, tail = part[:first], part[first:]
    yield head[np.argsort(-closeness[head], kind="stable")]
    yield tail[np.argsort(-closeness[tail], kind="stable")]
