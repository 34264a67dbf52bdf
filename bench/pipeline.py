"""Benchmark: the whole pipeline, report posted -> helper told, as `make run` starts it.

Starts a fresh in-memory SecantusDB (`--storage-path :memory:`), intake, matching and notify as
OS processes (shared.devstack, on free ports, in a RabbitMQ virtual host of our own), a
registry of 10,000 helpers, and a WeChat Work stand-in (bench/sink.py) that every helper
message goes to. A load generator in its own process (bench/loadgen.py) posts reports at fixed
arrival rates (open model). For each rate it reports HTTP latency from the planned send time,
and report-accepted -> first-outreach-sent from the timestamps the services store (the case's
`received_at`, the first helper outreach attempt's `finished_at`), the CPU of every process,
and whether the rate was sustained: completed >= 99% of offered within the run, and the backlog
(planned minus told) not growing. Database commands are counted inside the services
(BENCH_COUNT_COMMANDS=1) and divided by the reports of the 100/s run.

    .venv/bin/python -m bench.pipeline [--quick]     # writes bench/results/pipeline.json
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from bench import dbceiling
from bench.common import RESULTS, ROOT, CpuMeter, broker_pid, percentiles, virtual_host
from bench.match import places
from shared.devstack import DevStack
from shared.embedded import free_port, wait_for_port
from shared.storage import CASES, HELPERS, Document

HELPERS_IN_REGISTRY = 10_000
HELPER_PURPOSES = {"assignment", "work_order", "escalation"}
DECIDED = {"assigned", "accepted", "escalated", "resolved"}
SUSTAINED_SHARE = 0.99  # of offered reports told within the run (plus one second)
TELL_GRACE_S = 1.0
SERVICES = ("intake", "matching", "notify")
SECONDS = "(seconds waiting)"  # time spent on database commands, beside the command counts


def registry(sink_url: str, seed: int = 2022) -> dict[str, Any]:
    """10,000 helpers placed as bench/match.py places a city's volunteers; the demo registry's
    agencies (their own WeChat Work groups: the sink) and duty desk. Capacities are 3-8 so a
    run of ~20,000 reports does not use them up: this measures throughput, not the ladder."""
    spec = importlib.util.spec_from_file_location(
        "make_registry", ROOT / "deploy" / "demo" / "make_registry.py"
    )
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    agencies: list[dict[str, Any]] = demo.agencies()
    for agency in agencies:
        agency["contact"] = {
            "wechat_webhook": f"{sink_url}/cgi-bin/webhook/send?key={agency['id']}"
        }
    fixed = [*agencies, demo.duty_desk()]
    rng = np.random.default_rng(seed)
    n = HELPERS_IN_REGISTRY - len(fixed)
    lat, lon = places(rng, n)
    skills = ["sign_language", "driving", "wheelchair_vehicle", "nursing", "counselling", "guiding"]
    shares = np.array([0.10, 0.30, 0.05, 0.10, 0.05, 0.10])
    has = rng.random((n, len(skills))) < shares
    radius = rng.choice([2, 3, 5, 8, 10], n, p=[0.15, 0.25, 0.3, 0.2, 0.1])
    capacity = rng.integers(3, 9, n)
    volunteers = [
        {
            "id": f"vol-{i:05d}",
            "kind": "volunteer",
            "name": f"志愿者{i}",
            "lat": round(float(lat[i]), 5),
            "lon": round(float(lon[i]), 5),
            "radius_km": int(radius[i]),
            "capacity": int(capacity[i]),
            "skills": [s for s, yes in zip(skills, has[i], strict=True) if yes],
            "divisions": ["420100"],
            "contact": {"phone": f"139{i:08d}"},
        }
        for i in range(n)
    ]
    return {"helpers": [*volunteers, *fixed]}


@dataclass
class StepResult:
    rate: float
    duration: float
    offered: int
    accepted: int
    errors: dict[str, int]
    told_in_run: int
    backlog_slope_per_s: float
    sustained: bool
    http: dict[str, float | None]
    cores: dict[str, float]
    cpu_ms_per_report: dict[str, float]
    case_ids: list[str] = field(repr=False)
    t0: float = 0.0
    pipeline: dict[str, float | None] = field(default_factory=dict)
    db_commands: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.rate,
            "duration_s": self.duration,
            "offered": self.offered,
            "accepted": self.accepted,
            "errors": self.errors,
            "told_in_run": self.told_in_run,
            "completed_share": round(self.told_in_run / max(1, self.offered), 4),
            "backlog_slope_per_s": round(self.backlog_slope_per_s, 2),
            "sustained": self.sustained,
            "accept_http": self.http,
            "accepted_to_first_outreach": self.pipeline,
            "cores": self.cores,
            "cpu_ms_per_report": self.cpu_ms_per_report,
            **({"db_commands": self.db_commands} if self.db_commands else {}),
        }


class Bench:
    def __init__(self, tmp: Path, amqp_url: str, quick: bool) -> None:
        self.tmp = tmp
        self.quick = quick
        self.sink_port = free_port()
        self.sink_url = f"http://127.0.0.1:{self.sink_port}"
        self.mongo_port = free_port()
        registry_file = tmp / "registry.json"
        registry_file.write_text(json.dumps(registry(self.sink_url), ensure_ascii=False))
        self.stack = DevStack(
            var_dir=tmp,
            env={
                "AMQP_URL": amqp_url,
                "MONGO_URL": "",  # the stack's own SecantusDB, in memory
                "CARERELAY_ENV": "development",
                "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_PER_KEY": "1000000/second",
                "BENCH_COUNT_COMMANDS": "1",
                "WECHAT_WORK_WEBHOOK_URL": f"{self.sink_url}/cgi-bin/webhook/send?key=team",
                "DUTY_DESK_WEBHOOK_URL": f"{self.sink_url}/cgi-bin/webhook/send?key=duty",
            },
            ports={service: free_port() for service in SERVICES},
            mongo_port=self.mongo_port,
            mongo_storage=":memory:",
            registry_file=registry_file,
        )
        self.sink: subprocess.Popen[bytes] | None = None
        self.seed = 0
        self.told_before = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.sink = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
            [sys.executable, "-m", "bench.sink", "--port", str(self.sink_port)], cwd=ROOT
        )
        wait_for_port("127.0.0.1", self.sink_port, 30, self.sink)
        started = time.monotonic()
        self.stack.start(timeout=180)
        print(f"  stack up in {time.monotonic() - started:.0f} s", flush=True)

    def stop(self) -> None:
        self.stack.stop()
        if self.sink is not None:
            self.sink.terminate()
            self.sink.wait(timeout=10)

    @property
    def mongo_url(self) -> str:
        return str(self.stack.env["MONGO_URL"])

    def pids(self) -> dict[str, int | None]:
        secantus = next(
            (
                p.pid
                for p in _children()
                if "secantus" in " ".join(p.cmdline()) and str(self.mongo_port) in p.cmdline()
            ),
            None,
        )
        return {
            **{s: self.stack.process(s).pid for s in SERVICES},
            "secantusdb": secantus,
            "rabbitmq (shared)": broker_pid(),
            "sink": self.sink.pid if self.sink else None,
        }

    # ------------------------------------------------------------------ one rate

    def sink_stats(self) -> dict[str, int]:
        stats: dict[str, int] = httpx.get(f"{self.sink_url}/stats", timeout=10).json()
        return stats

    def counts(self) -> dict[tuple[str, str, str, str], float]:
        """Database commands each service has sent so far, by command, collection, origin."""
        out: dict[tuple[str, str, str, str], float] = {}
        for service in SERVICES:
            text = httpx.get(f"{self.stack.url(service)}/metrics", timeout=10).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if not sample.name.endswith("_total"):
                        continue
                    labels = sample.labels
                    if family.name == "carerelay_db_commands":
                        key = (service, labels["command"], labels["collection"], labels["origin"])
                        out[key] = sample.value
                    elif family.name == "carerelay_db_command_seconds":
                        out[service, SECONDS, "", labels["origin"]] = sample.value
        return out

    def run_rate(self, rate: float, duration: float, count_commands: bool = False) -> StepResult:
        self.seed += 1
        out = self.tmp / f"load-{self.seed}.json"
        meter = CpuMeter(self.pids())
        before = self.counts() if count_commands else {}
        counted_from = time.monotonic()
        told_before = self.sink_stats()["cases"]
        loadgen = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--url",
                self.stack.url("intake"),
                "--key",
                self.stack.api_key,
                "--rate",
                str(rate),
                "--duration",
                str(duration),
                "--seed",
                str(self.seed),
                "--out",
                str(out),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert loadgen.stdout is not None
        loadgen.stdout.readline()  # "sending": reports are built, the clock starts
        meter.start()
        window_started = time.monotonic()
        loadgen.wait()
        window = time.monotonic() - window_started
        in_window = meter.stop()
        load = json.loads(out.read_text())
        records = load["records"]
        accepted_ids = [r[4] for r in records if r[3] in (200, 202)]
        self._drain(told_before, len(accepted_ids))
        through_drain = meter.stop()
        after = self.counts() if count_commands else {}
        counted_s = time.monotonic() - counted_from
        in_window["loadgen"] = load["cpu_s"]
        through_drain["loadgen"] = load["cpu_s"]
        commands = _per_report(before, after, len(accepted_ids), counted_s) if after else {}
        return self._verdict(
            rate, duration, load, accepted_ids, in_window, window, through_drain, commands
        )

    def _drain(self, told_before: int, accepted: int, quiet_s: float = 15.0) -> None:
        """Wait until every accepted report of this run is told, or nothing moves for a while."""
        last, moved = -1, time.monotonic()
        while True:
            told = self.sink_stats()["cases"] - told_before
            if told >= accepted:
                return
            if told != last:
                last, moved = told, time.monotonic()
            elif time.monotonic() - moved > quiet_s:
                print(f"  drain stalled: {told}/{accepted} told", flush=True)
                return
            time.sleep(0.2)

    def _verdict(
        self,
        rate: float,
        duration: float,
        load: dict[str, Any],
        accepted_ids: list[str],
        in_window: dict[str, float],
        window: float,
        through_drain: dict[str, float],
        commands: dict[str, Any],
    ) -> StepResult:
        records, t0 = load["records"], load["t0"]
        end = t0 + duration
        first_told = self.first_told(set(accepted_ids))
        told_in_run = sum(1 for at in first_told.values() if at <= end + TELL_GRACE_S)
        grid = np.arange(t0 + duration / 2, end + 1e-9, 0.5)
        planned = np.sort(np.array([r[0] for r in records]))
        told = np.sort(np.array(list(first_told.values()) or [np.inf]))
        backlog = np.searchsorted(planned, grid, "right") - np.searchsorted(told, grid, "right")
        slope = float(np.polyfit(grid - t0, backlog, 1)[0]) if len(grid) > 2 else 0.0
        errors = Counter(str(r[3]) for r in records if r[3] not in (200, 202))
        offered = len(records)
        sustained = told_in_run >= SUSTAINED_SHARE * offered and slope <= 0.01 * rate
        accepted = len(accepted_ids)
        return StepResult(
            rate=rate,
            duration=duration,
            offered=offered,
            accepted=accepted,
            errors=dict(errors),
            told_in_run=told_in_run,
            backlog_slope_per_s=slope,
            sustained=sustained,
            http=percentiles([(r[2] - r[0]) * 1000 for r in records]),
            cores={k: round(v / window, 3) for k, v in in_window.items()},
            cpu_ms_per_report={
                k: round(v * 1000 / max(1, accepted), 2) for k, v in through_drain.items()
            },
            case_ids=accepted_ids,
            t0=t0,
            db_commands=commands,
        )

    def first_told(self, case_ids: set[str]) -> dict[str, float]:
        dump = httpx.get(f"{self.sink_url}/records", timeout=30).json()
        first: dict[str, float] = {}
        for at, case_id, _ in dump["records"]:
            if case_id in case_ids and case_id not in first:
                first[case_id] = at
        return first

    def recover(self, steps: list[StepResult]) -> dict[str, Any]:
        """If reports are still untold after the last run, restart the three services (as an
        operator would) and let the outbox relays finish: untold is not lost while stored."""
        accepted = {cid for step in steps for cid in step.case_ids}
        told = set(self.first_told(accepted))
        if len(told) >= len(accepted):
            return {"restarted": False, "untold_before_restart": 0}
        untold = len(accepted) - len(told)
        print(f"  {untold} reports untold: restarting the services to let the relays finish")
        for service in SERVICES:
            self.stack.stop_service(service)
            self.stack.start_service(service)
        for service in SERVICES:
            self.stack.wait_ready(service, 120)
        self._drain(self.sink_stats()["cases"] - len(told), len(accepted), quiet_s=20)
        return {"restarted": True, "untold_before_restart": untold}

    # ------------------------------------------------------------------ reckoning

    async def reckon(self, steps: list[StepResult]) -> dict[str, Any]:
        """Service timestamps per case, and accepted / completed / lost / duplicated."""
        client: AsyncMongoClient[Document] = AsyncMongoClient(self.mongo_url, tz_aware=True)
        try:
            db = client["carerelay"]
            await _quiet(db)
            cases: dict[str, Document] = {}
            async for doc in db[CASES].find(
                {}, {"received_at": 1, "outreach": 1, "status": 1, "offers.offer_id": 1}
            ):
                cases[doc["_id"]] = doc
            held = sum([int(h.get("load", 0)) async for h in db[HELPERS].find({}, {"load": 1})])
        finally:
            await client.close()
        accepted = {cid for step in steps for cid in step.case_ids}
        for step in steps:
            step.pipeline = percentiles(
                [ms for cid in step.case_ids if (ms := _told_ms(cases.get(cid))) is not None]
            )
        completed = {cid for cid in accepted if _told_ms(cases.get(cid)) is not None}
        assigned = sum(1 for c in cases.values() if c.get("status") == "assigned")
        doubled_offers = sum(1 for c in cases.values() if len(c.get("offers", [])) > 1)
        sends = [
            (cid, o.get("purpose"), o.get("recipient_kind"))
            for cid, c in cases.items()
            for o in c.get("outreach", [])
            if o.get("purpose") in HELPER_PURPOSES and o.get("status") == "sent"
        ]
        doubled_sends = len(sends) - len(set(sends))
        sink = self.sink_stats()
        return {
            "accepted": len(accepted),
            "stored": len(accepted & cases.keys()),
            "decided": sum(1 for cid in accepted if cases.get(cid, {}).get("status") in DECIDED),
            "completed": len(completed),
            "lost": len(accepted - completed),
            "duplicated": doubled_offers
            + doubled_sends
            + sink["duplicates"]
            + max(0, held - assigned),
            "duplicated_detail": {
                "cases_with_two_offers": doubled_offers,
                "helper_messages_recorded_twice": doubled_sends,
                "identical_messages_received_twice": sink["duplicates"],
                "capacity_held_beyond_assigned_cases": max(0, held - assigned),
            },
        }


async def _quiet(db: Any, timeout_s: float = 120.0) -> None:
    """Past overload, duplicate deliveries (outbox relays republish what waited longer than
    OUTBOX_GRACE_S) are still in flight after the last report is told; each holds a claim it
    gives back when it finds the case decided. Count capacity once they have settled."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = sum([int(h.get("load", 0)) async for h in db[HELPERS].find({}, {"load": 1})])
        if held == await db[CASES].count_documents({"status": "assigned"}):
            return
        await asyncio.sleep(1)


def _children() -> list[psutil.Process]:
    return list(psutil.Process().children(recursive=True))


def _told_ms(case: Document | None) -> float | None:
    """Report accepted (the case's received_at) -> the first helper message sent (its attempt's
    finished_at); both stored by the services (BSON dates: 1 ms resolution)."""
    if not case:
        return None
    done: list[datetime] = [
        o["finished_at"]
        for o in case.get("outreach", [])
        if o.get("purpose") in HELPER_PURPOSES
        and o.get("status") == "sent"
        and o.get("finished_at")
    ]
    if not done:
        return None
    received: datetime = case["received_at"]
    return (min(done) - received).total_seconds() * 1000


def _per_report(
    before: dict[tuple[str, str, str, str], float],
    after: dict[tuple[str, str, str, str], float],
    reports: int,
    elapsed_s: float,
) -> dict[str, Any]:
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}
    waited = {k[0]: v for k, v in delta.items() if k[1] == SECONDS and k[3] == "handler"}
    delta = {k: v for k, v in delta.items() if k[1] != SECONDS}
    handler = {k: v for k, v in delta.items() if k[3] == "handler"}
    periodic = {k: v for k, v in delta.items() if k[3] == "periodic"}
    in_flight = {service: waited.get(service, 0.0) / elapsed_s for service in SERVICES}
    return {
        "per_report": round(sum(handler.values()) / max(1, reports), 3),
        "mean_in_flight": {k: round(v, 2) for k, v in in_flight.items()},
        # The ceiling's writers: as many in flight per client as the services had.
        "writers": [max(1, math.ceil(v)) for v in in_flight.values()],
        "by_command": {
            f"{s} {c} {coll}": round(v / max(1, reports), 3)
            for (s, c, coll, _), v in sorted(handler.items())
        },
        "periodic_total": {
            f"{s} {c} {coll}": int(v) for (s, c, coll, _), v in sorted(periodic.items())
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    args = parser.parse_args(argv)
    result = run(args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


LADDER = (25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 200.0, 250.0, 300.0, 400.0)


def run(quick: bool) -> dict[str, Any]:
    """Rates up a ladder until one is not sustained; 100/s runs longer, for its latencies, and
    runs last if the climb stopped below it. The climb stops at the first rate not sustained:
    past overload the measurements would be of the recovery, not of the rate."""
    long_s, short_s = (8.0, 5.0) if quick else (20.0, 10.0)
    print(
        f"pipeline: SecantusDB in memory (--storage-path :memory:), intake, matching and notify "
        f"as processes, {HELPERS_IN_REGISTRY:,} helpers",
        flush=True,
    )
    with virtual_host() as amqp_url, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(Path(tmp), amqp_url, quick)
        bench.start()
        try:
            bench.run_rate(20, 3)  # warm-up: connections, caches, first code paths
            steps: list[StepResult] = []
            ladder = list(LADDER)
            while ladder:
                rate = ladder.pop(0)
                result = bench.run_rate(rate, long_s if rate == 100 else short_s, True)
                steps.append(result)
                print(
                    f"  {rate:>5.0f}/s for {result.duration:.0f} s: accepted {result.accepted}/"
                    f"{result.offered}, told within the run {result.told_in_run}, backlog "
                    f"{result.backlog_slope_per_s:+.1f}/s, POST p99 {result.http['p99_ms']} ms, "
                    f"{result.db_commands['per_report']} DB round trips/report"
                    f" -> {'sustained' if result.sustained else 'NOT sustained'}",
                    flush=True,
                )
                if not result.sustained:
                    # 100/s is measured even past overload: its latencies are a figure asked for.
                    ladder = [100.0] if rate < 100 else []
            recovery = bench.recover(steps)
            reckoning = asyncio.run(bench.reckon(steps))
        finally:
            bench.stop()
    first_miss = next((i for i, s in enumerate(steps) if not s.sustained), len(steps))
    sustained = steps[:first_miss]
    best = sustained[-1] if sustained else steps[0]
    at_100 = next((s for s in steps if s.rate == 100), None)
    round_trips = best.db_commands["per_report"]
    ceiling = asyncio.run(dbceiling.run_fresh(round_trips, best.db_commands["writers"]))
    passed = best.rate if sustained else 0.0
    ratio = round(passed / ceiling["per_s"], 3) if ceiling["per_s"] else None
    print(
        f"  database ceiling: {ceiling['writes_per_s']} writes/s / {round_trips} round trips = "
        f"{ceiling['per_s']} reports/s; max sustained {passed}/s = {ratio} of it",
        flush=True,
    )
    return {
        "database": "SecantusDB in memory (--storage-path :memory:), its own process",
        "helpers": HELPERS_IN_REGISTRY,
        "max_sustained_per_s": passed,
        "db_round_trips_per_report": round_trips,
        "db_commands_at_max_sustained": best.db_commands,
        "db_ceiling": ceiling,
        "db_ceiling_per_s": ceiling["per_s"],
        "ratio_to_db_ceiling": ratio,
        "at_100_per_s": (
            {**at_100.pipeline, "accept_http": at_100.http, "sustained": at_100.sustained}
            if at_100
            else {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
        ),
        **reckoning,
        "recovery": recovery,
        "steps": [s.summary() for s in steps],
    }


if __name__ == "__main__":
    raise SystemExit(main())
