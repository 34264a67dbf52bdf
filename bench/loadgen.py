"""The hotline during `make bench`: posts hardship reports at a fixed arrival rate, in a process
of its own so that its CPU shows apart from the services'.

Open model, as wrk2: request i has the planned send time t0 + i/rate and is sent then whatever
happened to earlier ones, and its latency counts from the planned time, so a stall in the
system shows as latency instead of silently slowing the sender. Reports are built before the
clock starts. Writes one JSON file: every request's planned, sent and answered times, status and
case id, and this process's CPU seconds.

    python -m bench.loadgen --url URL --key KEY --rate 100 --duration 30 --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.match import places

SOURCE, DIVISIONS = "12345-wuhan", ("420102", "420103", "420104", "420106", "420111")
NEEDS: tuple[tuple[str, float], ...] = (
    ("food", 0.35),
    ("medicine", 0.35),
    ("medical_care", 0.15),
    ("daily_care", 0.10),
    ("emergency", 0.05),
)
CATEGORIES = (
    ("physical", 0.45),
    ("visual", 0.15),
    ("hearing", 0.15),
    ("intellectual", 0.10),
    ("mental", 0.10),
    ("multiple", 0.05),
)
URGENCIES = (("immediate", 0.3), ("within_24h", 0.5), ("within_72h", 0.2))
SURNAMES, GIVEN = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林", "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超"


def _pick(rng: np.random.Generator, table: tuple[tuple[str, float], ...], n: int) -> list[str]:
    weights = np.array([w for _, w in table])
    return [table[i][0] for i in rng.choice(len(table), n, p=weights / weights.sum())]


def reports(rng: np.random.Generator, n: int, prefix: str) -> list[dict[str, Any]]:
    """`n` reports from across the city, each with its own ticket id (never a duplicate)."""
    lat, lon = places(rng, n)
    needs, categories = _pick(rng, NEEDS, n), _pick(rng, CATEGORIES, n)
    urgencies = _pick(rng, URGENCIES, n)
    grades, alone, phones = rng.integers(1, 5, n), rng.random(n) < 0.3, rng.integers(0, 10**8, n)
    out = []
    for i in range(n):
        name = SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7) % len(GIVEN)]
        out.append(
            {
                "source": SOURCE,
                "external_id": f"{prefix}-{i:06d}",
                "reported_at": "2022-11-22T08:15:00+08:00",
                "need": needs[i],
                "urgency": urgencies[i],
                "description": "小区封控，无法外出，需要帮助。",
                "person": {
                    "name": name,
                    "phone": f"138{int(phones[i]):08d}",
                    "disability": {"category": categories[i], "grade": int(grades[i])},
                    "lives_alone": bool(alone[i]),
                    "household_disabled_count": 1,
                    "low_income": bool(i % 3 == 0),
                    "carer_phone": "13900000000"
                    if categories[i] in ("intellectual", "mental")
                    else None,
                },
                "location": {
                    "lat": round(float(lat[i]), 5),
                    "lon": round(float(lon[i]), 5),
                    "address": f"湖北省武汉市某小区{i % 30 + 1}栋{i % 6 + 1}单元",
                    "division_code": DIVISIONS[i % len(DIVISIONS)],
                },
            }
        )
    return out


async def run(url: str, key: str, rate: float, duration: float, seed: int, connections: int) -> Any:
    count = max(1, round(rate * duration))
    bodies = [
        json.dumps(r, ensure_ascii=False).encode()
        for r in reports(np.random.default_rng(seed), count, f"B{seed}-{uuid.uuid4().hex[:6]}")
    ]
    results: list[list[Any]] = [[] for _ in range(count)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def send(i: int, planned: float) -> None:
            sent = time.time()
            try:
                async with session.post("/v1/reports", data=bodies[i], headers=headers) as answer:
                    body = await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                results[i] = [planned, sent, time.time(), type(exc).__name__, ""]
                return
            case_id = json.loads(body).get("case_id", "") if status in (200, 202) else ""
            results[i] = [planned, sent, time.time(), status, case_id]

        tasks = []
        print("sending", flush=True)
        cpu_before = time.process_time()
        start_wall, start = time.time() + 0.05, time.monotonic() + 0.05
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i, start_wall + i / rate)))
        await asyncio.gather(*tasks)
        cpu_s = time.process_time() - cpu_before
    return {
        "rate": rate,
        "duration": duration,
        "t0": start_wall,
        "records": results,
        "cpu_s": cpu_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(args.url, args.key, args.rate, args.duration, args.seed, args.connections)
    )
    args.out.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
