"""`carerelay` — the operator's command line (also `python -m shared.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

import aio_pika
from prometheus_client import CollectorRegistry

from shared import cli_outreach
from shared.auth import MongoKeyStore, Role, key_document
from shared.contracts import utcnow
from shared.crypto import FieldCipher
from shared.deadletters import list_dead_letters, replay
from shared.messaging import build_broker
from shared.registry import announce_change, load_helpers, read_registry_file, upsert_helpers
from shared.settings import CommonSettings
from shared.storage import mongo_client


async def registry_load(settings: CommonSettings, path: Path) -> int:
    registry = read_registry_file(path)
    client = mongo_client(settings)
    try:
        written = await upsert_helpers(
            client[settings.mongo_db],
            registry.helpers,
            utcnow(),
            settings.person_key_secret.get_secret_value().encode(),
        )
    finally:
        await client.close()
    kinds = Counter(h.kind.value for h in registry.helpers)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    print(f"loaded {written} helpers ({summary})")
    broker = build_broker(settings, CollectorRegistry(), "carerelay-cli")
    try:
        await asyncio.wait_for(broker.connect(), 10)
        await announce_change(broker, [h.id for h in registry.helpers])
    except Exception as exc:  # the registry is stored; replicas also reload periodically
        print(
            f"warning: could not announce the change ({type(exc).__name__}); running matching "
            "replicas pick it up on their next periodic reload",
            file=sys.stderr,
        )
    finally:
        await broker.stop()
    return 0


async def keys_create(settings: CommonSettings, args: argparse.Namespace) -> int:
    document, issued = key_document(
        name=args.name,
        role=Role(args.role),
        source=args.source,
        divisions=args.division,
        now=utcnow(),
        cipher=FieldCipher(settings.pii_key.get_secret_value()),
        token=args.token,
        require_signature=args.require_signature,
    )
    client = mongo_client(settings)
    try:
        added = await MongoKeyStore(client[settings.mongo_db]).add(document)
    finally:
        await client.close()
    if not added:
        if args.token:  # the development key, created again on every `make run`
            print(f"key {issued.key_id} already exists")
            return 0
        raise ValueError(f"key id {issued.key_id} is taken; try again")
    print(f"key id:  {issued.key_id}\napi key: {issued.token}")
    if issued.signing_secret:
        print(f"signing secret: {issued.signing_secret}")
    print("Store these now: only a hash of the key is kept.", file=sys.stderr)
    return 0


async def keys_list(settings: CommonSettings) -> int:
    client = mongo_client(settings)
    try:
        keys = await MongoKeyStore(client[settings.mongo_db]).all()
    finally:
        await client.close()
    for k in sorted(keys, key=lambda d: d["created_at"]):
        state = f"revoked {k['revoked_at']:%Y-%m-%d}" if k.get("revoked_at") else "active"
        scope = ",".join(k.get("divisions", [])) or "all"
        print(f"{k['_id']}\t{k['role']}\t{k.get('source') or '-'}\t{scope}\t{state}\t{k['name']}")
    return 0


async def keys_revoke(settings: CommonSettings, key_id: str) -> int:
    client = mongo_client(settings)
    try:
        revoked = await MongoKeyStore(client[settings.mongo_db]).revoke(key_id, utcnow())
    finally:
        await client.close()
    if not revoked:
        raise ValueError(f"no active key {key_id}")
    print(f"revoked {key_id}; replicas stop accepting it within API_KEY_CACHE_S seconds")
    return 0


async def dead_letters(settings: CommonSettings, args: argparse.Namespace) -> int:
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        if args.action == "list":
            for d in await list_dead_letters(channel, args.limit):
                died = f"{d.died_at:%Y-%m-%d %H:%M:%S}" if d.died_at else "-"
                print(f"{d.queue}\t{d.message_id or '-'}\t{d.routing_key}\t{d.reason}"
                      f"\tx{d.deaths}\t{died}\t{d.size} B")  # fmt: skip
            return 0
        done = await replay(channel, args.queue, args.message_id)
        print(f"replayed {done} message(s) from {args.queue}")
        return 0
    finally:
        await connection.close()


async def registry_list(settings: CommonSettings, kind: str | None) -> int:
    client = mongo_client(settings)
    try:
        helpers = await load_helpers(client[settings.mongo_db])
    finally:
        await client.close()
    for h in sorted(helpers, key=lambda d: (d["kind"], d["_id"])):
        if kind is None or h["kind"] == kind:
            print(f"{h['_id']}\t{h['kind']}\t{h['name']}\t{h.get('load', 0)}/{h.get('capacity')}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="carerelay", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    registry = commands.add_parser("registry", help="the helper registry")
    registry_commands = registry.add_subparsers(dest="action", required=True)
    load = registry_commands.add_parser("load", help="add or update helpers from a JSON file")
    load.add_argument("file", type=Path)
    listing = registry_commands.add_parser("list", help="list helpers (no contact details)")
    listing.add_argument(
        "--kind", choices=["volunteer", "paired_cadre", "community_worker", "agency", "duty_desk"]
    )
    dlq = commands.add_parser("dlq", help="dead letters: list them, replay them")
    dlq_commands = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_commands.add_parser("list", help="what died, where it was going, and why")
    dlq_list.add_argument("--limit", type=int, default=100)
    dlq_replay = dlq_commands.add_parser("replay", help="send dead letters back to work")
    dlq_replay.add_argument(
        "queue", help="a dead-letter queue, e.g. matching.hardship-reported.dlq"
    )
    dlq_replay.add_argument("--message-id", help="only this message")
    keys = commands.add_parser("keys", help="API keys for hotlines and operators")
    key_commands = keys.add_subparsers(dest="action", required=True)
    create = key_commands.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True, help="who holds it, e.g. 武汉12345热线")
    create.add_argument("--role", choices=[r.value for r in Role], default=Role.hotline.value)
    create.add_argument("--source", help="the source a hotline key reports as")
    create.add_argument(
        "--division", action="append", default=[], help="division code it may act for (repeat)"
    )
    create.add_argument("--require-signature", action="store_true", help="require signed bodies")
    create.add_argument("--token", help=argparse.SUPPRESS)  # the development key of `make run`
    key_commands.add_parser("list", help="list keys (never their secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    cli_outreach.add_parser(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = CommonSettings()
    try:
        if args.command == "registry" and args.action == "load":
            return asyncio.run(registry_load(settings, args.file))
        if args.command == "registry" and args.action == "list":
            return asyncio.run(registry_list(settings, args.kind))
        if args.command == "dlq":
            return asyncio.run(dead_letters(settings, args))
        if args.command == "keys":
            if args.action == "create":
                return asyncio.run(keys_create(settings, args))
            if args.action == "list":
                return asyncio.run(keys_list(settings))
            return asyncio.run(keys_revoke(settings, args.key_id))
        if args.command == "outreach":
            return asyncio.run(cli_outreach.run(args, settings))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
