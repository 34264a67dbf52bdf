"""Benchmark: one full ranking (candidate search, filters, scoring, top 10) over a city's
registry of volunteers, at 100,000 and 1,000,000 helpers.

The registry covers a Wuhan-sized square (about 8,500 km²): 60% of volunteers live around the
districts' centres, the rest anywhere; travel radii, capacities, loads, skills, hours and
acknowledgement records are mixed as a real registry's would be. Cases are drawn from the same
places, needs and disabilities; 10% are ranked on the widened rung. Each ranking is timed
from the candidate search to the top 10 (`HelperIndex.pool` feeding `decide`), as matching runs
it. Writes p50/p99 per size to bench/results/match.json.

    .venv/bin/python -m bench.match [--sizes 100000 1000000] [--queries 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from services.matching.domain import Helper, Person, Rung, Window, decide
from services.matching.index import HelperIndex
from services.matching.policy import Policy
from shared.contracts import CaseFacts, DisabilityCategory, HelperKind, Need, Urgency

RESULTS = Path(__file__).with_name("results") / "match.json"
CENTRE = (30.593, 114.305)
HALF_SIDE_KM = 46.0  # a 92 km square: ~8,500 km²
KM_LAT = 111.195
KM_LON = KM_LAT * float(np.cos(np.radians(CENTRE[0])))
DISTRICTS = [  # (km east, km north) of the centre, spread in km: the old town is densest
    (-3, 1, 3),
    (0, 4, 3),
    (3, -1, 3),
    (-6, -4, 4),
    (8, 5, 5),
    (10, -8, 5),
    (-12, 6, 5),
    (-15, -12, 6),
    (18, 14, 6),
    (22, -3, 6),
    (-25, 20, 7),
    (25, 25, 7),
    (-20, -28, 7),
]
SKILLS = {
    "driving": 0.30,
    "nursing": 0.10,
    "guiding": 0.10,
    "sign_language": 0.08,
    "wheelchair_vehicle": 0.05,
    "counselling": 0.05,
    "legal": 0.03,
}
EVERY_DAY, WEEKDAYS, WEEKEND = frozenset(range(1, 8)), frozenset(range(1, 6)), frozenset({6, 7})
HOURS: list[tuple[tuple[Window, ...], float]] = [
    ((), 0.55),
    ((Window(WEEKDAYS, 8 * 60, 18 * 60),), 0.15),
    ((Window(EVERY_DAY, 18 * 60, 22 * 60),), 0.15),
    ((Window(WEEKEND, 0, 24 * 60),), 0.10),
    ((Window(EVERY_DAY, 6 * 60, 9 * 60),), 0.05),
]
NEEDS = [
    (Need.medicine, 0.30),
    (Need.food, 0.30),
    (Need.medical_care, 0.15),
    (Need.daily_care, 0.10),
    (Need.emergency, 0.05),
    (Need.psychological_support, 0.05),
    (Need.legal_aid, 0.05),
]
CATEGORIES = [
    (DisabilityCategory.physical, 0.40),
    (DisabilityCategory.visual, 0.15),
    (DisabilityCategory.hearing, 0.15),
    (DisabilityCategory.intellectual, 0.10),
    (DisabilityCategory.mental, 0.10),
    (DisabilityCategory.speech, 0.05),
    (DisabilityCategory.multiple, 0.05),
]
# Each size is measured in ROUNDS passes over the same cases; the pass least disturbed by other
# processes on the machine (lowest p99) is reported, as timeit reports its best repeat.
ROUNDS = 3
MONDAY = datetime(2022, 11, 21, tzinfo=UTC) - timedelta(hours=8)  # Monday 00:00 in Wuhan


def places(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Where people live: mostly around the districts' centres, the rest anywhere."""
    east = rng.uniform(-HALF_SIDE_KM, HALF_SIDE_KM, n)
    north = rng.uniform(-HALF_SIDE_KM, HALF_SIDE_KM, n)
    clustered = rng.random(n) < 0.6
    district = rng.integers(0, len(DISTRICTS), n)
    spots = np.array(DISTRICTS, dtype=float)[district]
    east = np.where(clustered, spots[:, 0] + rng.normal(0, 1, n) * spots[:, 2], east)
    north = np.where(clustered, spots[:, 1] + rng.normal(0, 1, n) * spots[:, 2], north)
    east, north = (
        np.clip(east, -HALF_SIDE_KM, HALF_SIDE_KM),
        np.clip(north, -HALF_SIDE_KM, HALF_SIDE_KM),
    )
    return CENTRE[0] + north / KM_LAT, CENTRE[1] + east / KM_LON


def pick(rng: np.random.Generator, table: list[tuple[object, float]], n: int) -> list[int]:
    weights = np.array([w for _, w in table])
    picked: list[int] = rng.choice(len(table), n, p=weights / weights.sum()).tolist()
    return picked


def volunteers(rng: np.random.Generator, n: int) -> list[Helper]:
    lat, lon = places(rng, n)
    radius = rng.choice([1, 2, 3, 5, 8, 10, 15], n, p=[0.08, 0.17, 0.25, 0.30, 0.12, 0.06, 0.02])
    capacity = rng.choice([1, 2, 3, 4, 5], n, p=[0.25, 0.30, 0.25, 0.10, 0.10])
    busy = rng.random(n)  # 55% idle, the rest part-loaded, about 15% full
    load = np.where(busy < 0.55, 0, np.where(busy > 0.85, capacity, rng.integers(0, capacity)))
    names = list(SKILLS)
    has = rng.random((n, len(names))) < np.array(list(SKILLS.values()))
    skill_sets: dict[bytes, frozenset[str]] = {}
    hours = pick(rng, HOURS, n)  # type: ignore[arg-type]
    offers = rng.integers(0, 30, n)
    accepts = (offers * rng.beta(6, 2, n)).astype(int)
    active = rng.random(n) < 0.95
    limited = rng.random(n) < 0.2
    food_and_medicine = frozenset({Need.food, Need.medicine, Need.daily_care})
    out = []
    for i in range(n):
        row = has[i]
        skills = skill_sets.setdefault(
            row.tobytes(), frozenset(s for s, yes in zip(names, row, strict=True) if yes)
        )
        out.append(
            Helper(
                id=f"vol-{i:07d}",
                kind=HelperKind.volunteer,
                name=f"志愿者{i}",
                active=bool(active[i]),
                lat=float(lat[i]),
                lon=float(lon[i]),
                radius_km=float(radius[i]),
                capacity=int(capacity[i]),
                load=int(load[i]),
                skills=skills,
                needs=food_and_medicine if limited[i] else frozenset(),
                hours=HOURS[hours[i]][0],
                offers=int(offers[i]),
                accepts=int(accepts[i]),
            )
        )
    return out


def cadres(n: int) -> list[Helper]:
    return [
        Helper(id=f"cadre-{i:06d}", kind=HelperKind.paired_cadre, name=f"干部{i}", capacity=5)
        for i in range(n)
    ]


def cases(
    rng: np.random.Generator, n: int, helpers: int, paired: int
) -> list[tuple[CaseFacts, Rung, Person]]:
    lat, lon = places(rng, n)
    needs, categories = pick(rng, NEEDS, n), pick(rng, CATEGORIES, n)  # type: ignore[arg-type]
    minutes = rng.integers(0, 7 * 24 * 60, n)
    out = []
    for i in range(n):
        at = MONDAY + timedelta(minutes=int(minutes[i]))
        facts = CaseFacts(
            source="bench",
            need=NEEDS[needs[i]][0],
            urgency=Urgency.immediate,
            disability_category=CATEGORIES[categories[i]][0],
            disability_grade=int(rng.integers(1, 5)),
            lives_alone=bool(rng.random() < 0.3),
            household_disabled_count=1,
            low_income=bool(rng.random() < 0.3),
            has_carer=bool(rng.random() < 0.5),
            lat=float(lat[i]),
            lon=float(lon[i]),
            division_code="420103",
            reported_at=at,
            received_at=at,
        )
        draw = rng.random()
        person = Person()
        if draw < 0.2:
            person = Person(paired_cadre_ids=frozenset({f"cadre-{rng.integers(0, paired):06d}"}))
        elif draw < 0.3:
            person = Person(previous_helper_id=f"vol-{rng.integers(0, helpers):07d}")
        rung = Rung.field_widened if rng.random() < 0.1 else Rung.field
        out.append((facts, rung, person))
    return out


def measure(size: int, queries: int, seed: int = 7) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    policy = Policy.load()
    started = time.perf_counter()
    index = HelperIndex()
    index.build([*volunteers(rng, size), *cadres(max(1, size // 50))])
    built = time.perf_counter() - started
    gc.collect()
    workload = cases(rng, queries + 200, size, max(1, size // 50))
    rounds = []
    for _ in range(ROUNDS):
        timings, found, examined = [], 0, 0
        for n, (facts, rung, person) in enumerate(workload):
            t0 = time.perf_counter_ns()
            decision = decide(
                facts,
                index.pool(facts, rung, person, policy, facts.received_at),
                policy,
                facts.received_at,
                rung,
                person,
                nearest_first=True,
            )
            elapsed = time.perf_counter_ns() - t0
            if n >= 200:  # warm-up
                timings.append(elapsed / 1e6)
                found += len(decision.candidates)
                examined += decision.considered
        p50, p99 = np.percentile(timings, [50, 99]).tolist()
        rounds.append((p99, p50, max(timings)))
        print(
            f"{size:>9,} helpers: p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {max(timings):.3f} ms; "
            f"{found / queries:.1f} candidates, {examined / queries:.0f} helpers examined per case",
            flush=True,
        )
    p99, p50, _ = min(rounds)
    print(f"{size:>9,} helpers: built in {built:.1f}s; reported p50 {p50:.3f}, p99 {p99:.3f} ms")
    return {"helpers": size, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = [measure(size, args.queries) for size in args.sizes]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
