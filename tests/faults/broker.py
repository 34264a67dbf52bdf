"""A RabbitMQ node of the fault suite's own: it can be stopped and started mid-stream without
disturbing the machine's broker (or anyone else using it)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from shared.embedded import free_port, wait_for_port


class RabbitNode:
    def __init__(self) -> None:
        self.name = f"carerelay-faults-{uuid.uuid4().hex[:6]}@localhost"
        self.port = free_port()
        self._dist_port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="carerelay-rabbit-"))

    @staticmethod
    def available() -> bool:
        return (
            shutil.which("rabbitmq-server") is not None and shutil.which("rabbitmqctl") is not None
        )

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def ctl(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["rabbitmqctl", "-q", "-n", self.name, *args],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def start(self) -> RabbitNode:
        (self._dir / "enabled_plugins").write_text("[].\n")
        (self._dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        owner = pwd.getpwnam("rabbitmq") if os.geteuid() == 0 else None
        if owner is not None:  # the server script drops to the rabbitmq user
            for path in (self._dir, *self._dir.iterdir()):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        env = os.environ | {
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_MNESIA_BASE": str(self._dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self._dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self._dir / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(self._dir / "pid"),
        }
        subprocess.run(["rabbitmq-server", "-detached"], env=env, check=True, timeout=60)  # noqa: S607
        self.ctl("wait", str(self._dir / "pid"), "--timeout", "90")
        wait_for_port("127.0.0.1", self.port, 60)
        return self

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        wait_for_port("127.0.0.1", self.port, 60)

    def add_vhost(self) -> str:
        vhost = f"faults-{uuid.uuid4().hex[:8]}"
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return vhost

    def queue_depths(self, vhost: str) -> dict[str, int]:
        rows = [
            r.split("\t")
            for r in self.ctl("list_queues", "-p", vhost, "name", "messages").splitlines()
        ]
        return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}

    def queue_consumers(self, vhost: str) -> dict[str, int]:
        rows = [
            r.split("\t")
            for r in self.ctl("list_queues", "-p", vhost, "name", "consumers").splitlines()
        ]
        return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}

    def stop(self) -> None:
        try:
            self.ctl("stop", timeout=60)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
