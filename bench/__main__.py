"""`make bench`: the relay hop, the pipeline (with the database ceiling) and the matching figures
in one run; writes bench/results/latest.json and bench/results/latency.png, prints a summary.

    .venv/bin/python -m bench [--quick]     # bench/match.py runs first (make bench-match)
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: write the PNG only
import matplotlib.pyplot as plt

from bench import pipeline, relay
from bench.common import RESULTS, machine

TARGETS = {
    "ratio_to_db_ceiling": 0.7,
    "relay_ratio": 0.75,
    "db_round_trips_per_report": 3,
    "p99_ms_at_100_per_s": 50,
}


def plot(steps: list[dict[str, Any]], path: Path) -> None:
    steps = sorted(steps, key=lambda s: s["offered_per_s"])
    rates = [s["offered_per_s"] for s in steps]
    fig, (told, http) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-"), ("max_ms", "x:")):
        told.plot(
            rates, [s["accepted_to_first_outreach"].get(key) for s in steps], style, label=key[:-3]
        )
        http.plot(rates, [s["accept_http"].get(key) for s in steps], style, label=key[:-3])
    told.axhline(TARGETS["p99_ms_at_100_per_s"], color="grey", lw=0.8, ls="--", label="p99 target")
    for axis, title in (
        (told, "report accepted -> first helper message sent\n(services' own timestamps)"),
        (http, "POST /v1/reports answered\n(from the planned send time, open model)"),
    ):
        axis.set_yscale("log")
        axis.set_xlabel("offered reports / s")
        axis.set_ylabel("ms")
        axis.set_title(title, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        for s in steps:
            if not s["sustained"]:
                axis.axvspan(s["offered_per_s"] - 2, s["offered_per_s"] + 2, color="red", alpha=0.1)
    told.legend(fontsize=8)
    fig.suptitle(
        "CareRelay pipeline latency against offered rate (red: not sustained)", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(latest: dict[str, Any]) -> str:
    p, r, at = latest["pipeline"], latest["relay"], latest["pipeline"]["at_100_per_s"]
    checks = [
        (
            "max sustained / DB ceiling",
            p["ratio_to_db_ceiling"],
            ">=",
            TARGETS["ratio_to_db_ceiling"],
        ),
        ("relay ours / raw", r["ratio"], ">=", TARGETS["relay_ratio"]),
        ("DB round trips per report", latest["db_round_trips_per_report"], "<=", 3),
        ("p99 at 100/s (ms)", at["p99_ms"], "<=", TARGETS["p99_ms_at_100_per_s"]),
        ("lost", p["lost"], "<=", 0),
        ("duplicated", p["duplicated"], "<=", 0),
    ]
    lines = [
        f"CareRelay benchmark, {latest['finished_at']} on {latest['machine']['nproc']} x "
        f"{latest['machine']['cpu_model']}, {latest['machine']['ram_gib']} GiB "
        f"(load average at start {latest['machine']['load_average_at_start']})",
        f"  database: {p['database']}",
        f"  pipeline: max sustained {p['max_sustained_per_s']} reports/s; DB ceiling "
        f"{p['db_ceiling_per_s']}/s ({p['db_ceiling']['writes_per_s']} writes/s / "
        f"{latest['db_round_trips_per_report']} round trips)",
        f"  at 100/s: accepted -> first outreach p50 {at['p50_ms']} / p95 {at['p95_ms']} / p99 "
        f"{at['p99_ms']} / max {at['max_ms']} ms",
        f"  reckoning: accepted {p['accepted']}, completed {p['completed']}, lost {p['lost']}, "
        f"duplicated {p['duplicated']}",
        f"  relay hop: ours {r['ours_per_s']}/s, raw aio-pika {r['raw_per_s']}/s",
        "  match: "
        + ", ".join(f"{m['helpers']:,} helpers p99 {m['p99_ms']} ms" for m in latest["match"]),
    ]
    for name, value, op, target in checks:
        met = value is not None and (value >= target if op == ">=" else value <= target)
        lines.append(f"  [{'met' if met else 'MISSED'}] {name}: {value} (target {op} {target})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    args = parser.parse_args(argv)
    started = time.monotonic()
    host = machine()
    relay_result = relay.run(1000 if args.quick else 3000)
    print(
        f"relay hop: ours {relay_result['ours_per_s']}/s, raw {relay_result['raw_per_s']}/s",
        flush=True,
    )
    pipeline_result = pipeline.run(args.quick)
    match_file = RESULTS / "match.json"
    latest = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": host,
        "duration_s": round(time.monotonic() - started),
        "pipeline": pipeline_result,
        "relay": relay_result,
        "db_round_trips_per_report": pipeline_result["db_round_trips_per_report"],
        "match": json.loads(match_file.read_text()) if match_file.exists() else [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(latest, indent=2, ensure_ascii=False) + "\n")
    plot(pipeline_result["steps"], RESULTS / "latency.png")
    print(summary(latest))
    print(f"wrote {RESULTS / 'latest.json'} and {RESULTS / 'latency.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
