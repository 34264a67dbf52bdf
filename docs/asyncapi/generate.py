"""Writes docs/asyncapi/<service>.json from each service's own broker (`make asyncapi`).

The services publish the same document, for the broker they are configured with, at
GET /asyncapi.json; tests/ops/test_asyncapi.py fails when a committed file is out of date.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from services.intake.app import build_app as intake  # noqa: E402
from services.intake.settings import IntakeSettings  # noqa: E402
from services.matching.app import build_app as matching  # noqa: E402
from services.matching.settings import MatchingSettings  # noqa: E402
from services.notify.app import build_app as notify  # noqa: E402
from services.notify.settings import NotifySettings  # noqa: E402
from shared.service import asyncapi_document  # noqa: E402

# The broker as docker-compose.yml names it, so the document does not depend on who runs this.
BROKER = {"AMQP_URL": "amqp://rabbitmq:5672/", "LOG_LEVEL": "WARNING"}
SERVICES: dict[str, Callable[[], FastAPI]] = {
    "intake": lambda: intake(IntakeSettings(**BROKER)),  # type: ignore[arg-type]
    "matching": lambda: matching(MatchingSettings(**BROKER)),  # type: ignore[arg-type]
    "notify": lambda: notify(NotifySettings(**BROKER)),  # type: ignore[arg-type]
}


def render(service: str) -> str:
    document = asyncapi_document(SERVICES[service]())
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def path_of(service: str) -> Path:
    return HERE / f"{service}.json"


def main() -> int:
    for service in SERVICES:
        path_of(service).write_text(render(service), encoding="utf-8")
        print(f"wrote {path_of(service).relative_to(HERE.parents[1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
