"""`carerelay outreach ...`: list the messages every channel gave up on, and replay them.

A replay hands the message back to notify's retry queue as a new round: notify plans it again
from the stored event (which holds no personal data), tries its channels from the first, and
records each attempt under new keys, so nothing already sent is sent again by accident."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from shared.contracts import OutreachDeadLetter, OutreachRetry, utcnow
from shared.messaging import build_broker
from shared.settings import CommonSettings
from shared.storage import mongo_client
from shared.topology import DELAYS, NOTIFY_RETRY, declare_topology

COLUMNS = ("id", "status", "source", "external_id", "purpose", "to", "channels", "attempts")


def add_parser(commands: Any) -> None:
    """Add `outreach` to the `carerelay` command's subcommands."""
    outreach = commands.add_parser("outreach", help="outreach that could not be delivered")
    actions = outreach.add_subparsers(dest="action", required=True)
    failed = actions.add_parser("failed", help="list dead-lettered messages (no personal data)")
    failed.add_argument("--all", action="store_true", help="also those already replayed")
    failed.add_argument("--limit", type=int, default=100)
    replay = actions.add_parser("replay", help="send dead-lettered messages again")
    replay.add_argument("ids", nargs="*", help="dead letter ids (from `failed`)")
    replay.add_argument("--all", action="store_true", help="every open dead letter")


async def run(args: argparse.Namespace, settings: CommonSettings) -> int:
    if args.action == "failed":
        return await _list(settings, args.all, args.limit)
    if not args.ids and not args.all:
        print("error: name dead letter ids, or --all")
        return 2
    return await _replay(settings, args.ids, args.all)


async def _list(settings: CommonSettings, everything: bool, limit: int) -> int:
    client = mongo_client(settings)
    try:
        query = {} if everything else {"status": "open"}
        cursor = client[settings.mongo_db][OutreachDeadLetter.collection].find(query, limit=limit)
        letters = [OutreachDeadLetter.model_validate(doc) async for doc in cursor]
    finally:
        await client.close()
    print("\t".join(COLUMNS) + "\terror\tfailed_at")
    for d in sorted(letters, key=lambda d: d.failed_at):
        row = (d.id, d.status, d.source, d.external_id, d.purpose, d.recipient_kind)
        print("\t".join((*row, ",".join(d.channels), str(d.attempts), d.error, str(d.failed_at))))
    print(f"{len(letters)} dead letter(s)")
    return 0


async def _replay(settings: CommonSettings, ids: list[str], everything: bool) -> int:
    client = mongo_client(settings)
    letters = client[settings.mongo_db][OutreachDeadLetter.collection]
    broker = build_broker(settings, CollectorRegistry(), "carerelay-cli")
    replayed = 0
    try:
        await asyncio.wait_for(broker.connect(), 10)
        await declare_topology(broker, settings.queue_options)
        query: dict[str, Any] = {"status": "open"}
        if not everything:
            query["_id"] = {"$in": ids}
        for letter in [OutreachDeadLetter.model_validate(d) async for d in letters.find(query)]:
            # Claim it first (one operator wins), then hand it back to notify.
            claimed = await letters.update_one(
                {"_id": letter.id, "status": "open", "attempts": letter.attempts},
                {"$set": {"status": "replayed", "replayed_at": utcnow()}, "$inc": {"replays": 1}},
            )
            if claimed.modified_count != 1:
                continue
            retry = OutreachRetry(
                case_id=letter.case_id,
                event=letter.event,
                purpose=letter.purpose,
                recipient_kind=letter.recipient_kind,
                recipient_id=letter.recipient_id,
                route=0,
                attempt=letter.attempts + 1,
            )
            await broker.publish(
                retry.model_dump(mode="json"),
                exchange=DELAYS,
                routing_key=NOTIFY_RETRY.routing_key,
                persist=True,
                message_id=retry.event_id,
                timeout=10,
            )
            replayed += 1
            print(f"replayed {letter.id}")
    finally:
        await broker.stop()
        await client.close()
    if ids and not replayed:
        print("nothing replayed: no open dead letter with those ids")
        return 1
    print(f"{replayed} replayed")
    return 0
