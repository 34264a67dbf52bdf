"""`carerelay` — the operator's command line (also `python -m shared.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry

from shared import cli_outreach
from shared.contracts import utcnow
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
        if args.command == "outreach":
            return asyncio.run(cli_outreach.run(args, settings))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
