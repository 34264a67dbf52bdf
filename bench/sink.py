"""The outside world's end of outreach during `make bench`: a WeChat Work group robot stand-in
(its own process, so its CPU is counted apart) that answers every message `{"errcode": 0}` and
records when each arrived and which case it names.

    python -m bench.sink --port N      # GET /stats: counts; GET /records: every message
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from typing import Any

from aiohttp import web

CASE_LINK = re.compile(r"/v1/cases/([0-9a-f]{16,64})")


class Sink:
    def __init__(self) -> None:
        self.records: list[tuple[float, str, str]] = []  # (arrival, case id, key of the content)
        self.seen: Counter[tuple[str, str]] = Counter()

    async def receive(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.read()
        try:
            message: dict[str, Any] = json.loads(body)
            kind = str(message.get("msgtype", ""))
            content = str((message.get(kind) or {}).get("content", ""))
        except (ValueError, AttributeError):
            kind, content = "", body.decode(errors="replace")
        found = CASE_LINK.search(content)
        case_id = found.group(1) if found else ""
        key = f"{kind}:{hash(content)}"
        self.records.append((arrived, case_id, key))
        self.seen[case_id, key] += 1
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def stats(self, _: web.Request) -> web.Response:
        cases = {case_id for case_id, _ in self.seen}
        return web.json_response(
            {
                "messages": len(self.records),
                "cases": len(cases),
                "duplicates": sum(n - 1 for n in self.seen.values() if n > 1),
            }
        )

    async def dump(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"records": self.records, "duplicates": [k for k, n in self.seen.items() if n > 1]}
        )


def app() -> web.Application:
    sink = Sink()
    application = web.Application(client_max_size=1 << 20)
    application.router.add_post("/{tail:.*}", sink.receive)
    application.router.add_get("/stats", sink.stats)
    application.router.add_get("/records", sink.dump)
    return application


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(app(), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
