"""Exit 0 when RabbitMQ accepts TCP connections on AMQP_URL's host and port (used by make)."""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit

from shared.embedded import wait_for_port
from shared.settings import DEFAULT_AMQP_URL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wait", type=float, default=1.0, help="seconds to wait")
    args = parser.parse_args(argv)
    url = urlsplit(os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    try:
        wait_for_port(url.hostname or "127.0.0.1", url.port or 5672, args.wait)
    except TimeoutError:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
