"""The fault suite's ledger, in the manner of Jepsen's RabbitMQ test: a hotline that sends
reports at a steady rate and records every acceptance, then a reckoning against what the
system stored and sent."""

from __future__ import annotations

import asyncio
import copy
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import HardshipReport
from shared.storage import CASES, HELPERS, Document
from tests.support import Recorded

EXAMPLE: dict[str, Any] = HardshipReport.model_json_schema()["examples"][0]
CENTRE = (30.5801, 114.2734)
DECIDED = {"assigned", "accepted", "escalated", "resolved"}


def hardship_report(external_id: str, rng: random.Random) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["external_id"] = external_id
    body["location"]["lat"] = CENTRE[0] + rng.uniform(-0.01, 0.01)
    body["location"]["lon"] = CENTRE[1] + rng.uniform(-0.01, 0.01)
    body["person"]["disability"] = {"category": "physical", "grade": 3}
    body["urgency"] = "within_24h"
    return body


@dataclass
class Hotline:
    """Posts `count` reports at `rate` a second (open model: each has its planned time, so a
    stall does not slow the sender). A report is retried, unchanged, until it is answered 2xx,
    as a hotline would; the first attempt's time is kept for the reckoning."""

    client: httpx.AsyncClient
    count: int
    rate: float
    seed: int = 1
    accepted: dict[str, str] = field(default_factory=dict)  # external id -> case id
    first_try: dict[str, float] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)

    async def run(self) -> None:
        rng = random.Random(self.seed)
        start = time.monotonic()
        tasks = []
        for i in range(self.count):
            delay = start + i / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            external_id = f"F-{self.seed}-{i:05d}-{uuid.uuid4().hex[:6]}"
            tasks.append(asyncio.create_task(self._send(external_id, rng)))
        await asyncio.gather(*tasks)

    async def _send(self, external_id: str, rng: random.Random) -> None:
        body = hardship_report(external_id, rng)
        self.first_try[external_id] = time.time()
        pause = 0.2
        while True:
            try:
                response = await self.client.post("/v1/reports", json=body)
                if response.status_code in (200, 202):
                    self.accepted[external_id] = response.json()["case_id"]
                    return
                self.refusals[str(response.status_code)] += 1
            except httpx.TransportError as exc:
                self.refusals[type(exc).__name__] += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


@dataclass(frozen=True)
class Reckoning:
    scenario: str
    sent: int
    accepted: int
    decided: int
    lost: int
    duplicated_assignments: int
    duplicated_sends: int
    leaked_claims: int
    unsent: int
    unsent_states: dict[str, int]
    recovery_s: float
    refusals: dict[str, int]

    @property
    def duplicated(self) -> int:
        return self.duplicated_assignments + self.duplicated_sends

    def line(self) -> str:
        return (
            f"ledger {self.scenario:<22} sent={self.sent} accepted={self.accepted} "
            f"decided={self.decided} lost={self.lost} duplicated={self.duplicated} "
            f"(assignments={self.duplicated_assignments} sends={self.duplicated_sends}) "
            f"unsent={self.unsent}{self.unsent_states or ''} "
            f"leaked_claims={self.leaked_claims} recovery_s={self.recovery_s:.1f} "
            f"refusals={dict(sorted(self.refusals.items()))}"
        )


async def cases_of(db: AsyncDatabase[Document], case_ids: set[str]) -> dict[str, Document]:
    cursor = db[CASES].find(
        {"_id": {"$in": sorted(case_ids)}},
        {"status": 1, "offers": 1, "timeline": 1, "outreach": 1, "received_at": 1},
    )
    return {doc["_id"]: doc async for doc in cursor}


def decided_at(case: Document) -> datetime | None:
    return next((t["at"] for t in case.get("timeline", []) if t["status"] in DECIDED), None)


async def reckon(
    scenario: str,
    hotline: Hotline,
    db: AsyncDatabase[Document],
    messages: list[Recorded],
    fault_ended: float,
) -> Reckoning:
    case_ids = set(hotline.accepted.values())
    cases = await cases_of(db, case_ids)
    decided = {cid for cid, c in cases.items() if c["status"] in DECIDED}
    first_offers = Counter(cid for cid, c in cases.items() for _ in c.get("offers", []))
    held = sum([int(h.get("load", 0)) async for h in db[HELPERS].find({}, {"load": 1})])
    assigned = sum(1 for c in cases.values() if c["status"] == "assigned")
    duplicated_assignments = sum(1 for n in first_offers.values() if n > 1)
    sends = Counter(
        (cid, r.json()["msgtype"], r.json()[r.json()["msgtype"]]["content"])
        for r in messages
        for cid in _case_ids_in(r, case_ids)
    )
    told = {cid for cid, _, _ in sends}
    helper_purposes = ("offer", "assignment", "escalation", "work_order")
    unsent_states = Counter(
        o.get("status", "?")
        for cid in decided - told
        for o in cases[cid].get("outreach", [])
        if o.get("purpose") in helper_purposes
    )
    disrupted = [
        cases[cid]
        for ext, cid in hotline.accepted.items()
        if hotline.first_try[ext] <= fault_ended and cid in cases
    ]
    finished = [at.timestamp() for c in disrupted if (at := decided_at(c)) is not None]
    return Reckoning(
        scenario=scenario,
        sent=hotline.count,
        accepted=len(case_ids),
        decided=len(decided),
        lost=len(case_ids - decided),
        duplicated_assignments=duplicated_assignments,
        duplicated_sends=sum(n - 1 for n in sends.values() if n > 1),
        leaked_claims=held - assigned,
        unsent=len(decided - told),
        unsent_states=dict(unsent_states),
        recovery_s=max([0.0, *(t - fault_ended for t in finished)]),
        refusals=dict(hotline.refusals),
    )


def _case_ids_in(request: Recorded, case_ids: set[str]) -> list[str]:
    text = request.body.decode()
    return [cid for cid in _candidates(text) if cid in case_ids]


def _candidates(text: str) -> list[str]:
    marker = "/v1/cases/"
    found = []
    start = text.find(marker)
    while start != -1:
        found.append(text[start + len(marker) : start + len(marker) + 32])
        start = text.find(marker, start + 1)
    return found
