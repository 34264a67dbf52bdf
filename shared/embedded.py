"""The embedded MongoDB-wire server (SecantusDB) for `make run` and the tests.

It runs as its own process and is reached over TCP exactly like a mongod, so nothing in the
services knows the difference.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

# No driver-level retryable writes on SecantusDB: it keeps a record of each one for 30 minutes
# and scans them all on every write, so past ~10,000 writes its rate falls from ~1,100 to ~100
# a second (make bench). Our writes are idempotent and handlers retry on their own; a mongod
# URL (compose, Kubernetes) keeps the driver's default.
EMBEDDED_URL_OPTIONS = "directConnection=true&retryWrites=false"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class EmbeddedMongo:
    def __init__(
        self, port: int, storage_path: str | Path = ":memory:", log: IO[bytes] | None = None
    ) -> None:
        self.port = port
        self.storage_path = str(storage_path)
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?{EMBEDDED_URL_OPTIONS}"

    def start(self, timeout: float = 30.0) -> str:
        if self.storage_path != ":memory:":
            Path(self.storage_path).mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                sys.executable,
                "-m",
                "secantus",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                self.storage_path,
                "--log-level",
                "WARNING",
            ],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.port, timeout, self._proc)
        return self.url

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
