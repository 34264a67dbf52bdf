"""Runs the whole system locally as separate processes: `make run`, and the end-to-end tests.

Starts an embedded SecantusDB when MONGO_URL is unset, loads the demo registry, then starts
intake, matching and notify, each logging to var/log/<service>.log (and the terminal).
Replicas are instances named `<service>-<n>` (e.g. `matching-2`), each on its own port.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from shared.embedded import EmbeddedMongo, wait_for_port
from shared.settings import EMBEDDED_MONGO_PORT

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"intake": 8000, "matching": 8001, "notify": 8002}
DEMO_REGISTRY = ROOT / "deploy" / "demo" / "registry.json"
# The demo hotline's key on a development machine (`DEV_API_KEY` overrides it); never production.
DEV_API_KEY = "crk_devhotline_development-only-hotline-key"
DEMO_SOURCE, DEMO_DIVISION = "12345-wuhan", "420100"


def service_of(instance: str) -> str:
    """The service an instance runs: `matching-2` runs matching."""
    return instance.split("-", 1)[0]


def _pump(stream: IO[bytes], sinks: list[IO[bytes]]) -> None:
    for line in iter(stream.readline, b""):
        for sink in sinks:
            sink.write(line)
            sink.flush()


class DevStack:
    def __init__(
        self,
        var_dir: Path = ROOT / "var",
        env: Mapping[str, str] | None = None,
        ports: Mapping[str, int] | None = None,
        mongo_port: int = EMBEDDED_MONGO_PORT,
        mongo_storage: str | None = None,
        registry_file: Path | None = DEMO_REGISTRY,
        echo: bool = False,
    ) -> None:
        self.var_dir = var_dir
        self.log_dir = var_dir / "log"
        self.ports = dict(ports or SERVICES)
        self.env = {**os.environ, **(env or {})}
        self.registry_file = registry_file
        self.echo = echo
        self._mongo: EmbeddedMongo | None = None
        self._mongo_port = mongo_port
        self._mongo_storage = mongo_storage or str(var_dir / "secantus-data")
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    @property
    def api_key(self) -> str:
        return self.env.get("DEV_API_KEY") or DEV_API_KEY

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, timeout: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.env.get("MONGO_URL"):
            log = open(self.log_dir / "secantus.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
            self._mongo = EmbeddedMongo(self._mongo_port, self._mongo_storage, log)
            self.env["MONGO_URL"] = self._mongo.start()
        if self.registry_file is not None:
            self.cli("registry", "load", str(self.registry_file))
        self.cli(
            "keys", "create", "--name", "demo hotline (development)", "--role", "hotline",
            "--source", DEMO_SOURCE, "--division", DEMO_DIVISION, "--token", self.api_key,
        )  # fmt: skip
        for service in self.ports:
            self.start_service(service)
        for service in self.ports:
            self.wait_ready(service, timeout)

    def cli(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own CLI, fixed argv
            [sys.executable, "-m", "shared.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"carerelay {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start_service(self, instance: str) -> None:
        service = service_of(instance)
        env = {**self.env, f"{service.upper()}_PORT": str(self.ports[instance])}
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-m", f"services.{service}"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        log = open(self.log_dir / f"{instance}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        sinks: list[IO[bytes]] = [log] + ([sys.stdout.buffer] if self.echo else [])
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(proc.stdout, sinks), daemon=True).start()
        self._procs[instance] = proc

    def restart_service(self, instance: str, timeout: float = 60.0) -> None:
        """Start a stopped instance again (same port, same log) and wait until it is ready."""
        self.start_service(instance)
        self.wait_ready(instance, timeout)

    def wait_ready(self, service: str, timeout: float = 60.0) -> None:
        proc = self._procs[service]
        wait_for_port("127.0.0.1", self.ports[service], timeout, proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url(service)}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{service} not ready after {timeout}s; see {self.log_dir}")

    def process(self, service: str) -> subprocess.Popen[bytes]:
        return self._procs[service]

    def stop_service(self, service: str, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        proc = self._procs.pop(service)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop(self) -> None:
        for service in list(self._procs):
            self.stop_service(service)
        if self._mongo is not None:
            self._mongo.stop()
            self._mongo = None
        for log in self._logs:
            log.close()
        self._logs.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run CareRelay locally")
    parser.add_argument("--fresh", action="store_true", help="start with an empty database")
    args = parser.parse_args(argv)
    stack = DevStack(echo=True)
    if args.fresh:
        shutil.rmtree(stack.var_dir / "secantus-data", ignore_errors=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        stack.start()
        print(
            READY_BANNER.format(
                intake=stack.url("intake"),
                matching=stack.url("matching"),
                notify=stack.url("notify"),
                key=stack.api_key,
            ),
            flush=True,
        )
        while not stopping.is_set() and all(p.poll() is None for p in stack._procs.values()):
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan children
        print("\nstopping CareRelay…", flush=True)
        stack.stop()
    return 0


READY_BANNER = """
CareRelay is running.
  intake    {intake}   (POST /v1/reports, GET /v1/cases/<id>, /docs)
  matching  {matching}   (GET /v1/registry/helpers)
  notify    {notify}
  logs      var/log/<service>.log

Post a report as the demo hotline (its development key):
  curl -s -X POST {intake}/v1/reports -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d @deploy/demo/report.json
Then follow its status_url:
  curl -s -H 'Authorization: Bearer {key}' {intake}/v1/cases/<case_id>

Ctrl-C stops everything.
"""

if __name__ == "__main__":
    raise SystemExit(main())
