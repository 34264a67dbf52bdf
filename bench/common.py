"""What the benchmarks share: a RabbitMQ virtual host of their own, process CPU, percentiles,
the machine they ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BROKER = "127.0.0.1:5672"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(  # noqa: S603 - fixed argv
        ["rabbitmqctl", "-q", *args],  # noqa: S607 - the broker's own CLI, from PATH
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextmanager
def virtual_host(prefix: str = "carerelay-bench") -> Iterator[str]:
    """A virtual host of our own on the machine's shared broker, deleted afterwards: nobody
    else's queues are touched."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{BROKER}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def machine() -> dict[str, object]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def broker_pid() -> int | None:
    """The RabbitMQ server's Erlang VM (shared with every other user of the machine)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "beam.smp" and "rabbit" in cmdline and "boot" in cmdline:
            return int(proc.pid)
    return None


class CpuMeter:
    """CPU seconds each named process spent between `start()` and `stop()`, and the machine's."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid is not None}
        self._before: dict[str, float] = {}
        self._machine_before: float = 0.0

    @staticmethod
    def _seconds(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    def _machine_busy(self) -> float:
        times = psutil.cpu_times()
        return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))

    def start(self) -> None:
        self._before = {name: self._seconds(p) for name, p in self._procs.items()}
        self._machine_before = self._machine_busy()

    def stop(self) -> dict[str, float]:
        spent = {
            name: self._seconds(p) - self._before[name]
            for name, p in self._procs.items()
            if p.is_running()
        }
        spent["machine"] = self._machine_busy() - self._machine_before
        return spent


def percentiles(values_ms: Sequence[float]) -> dict[str, float | None]:
    if not values_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    p50, p95, p99 = np.percentile(np.asarray(values_ms), [50, 95, 99]).tolist()
    return {
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(values_ms), 1),
    }
