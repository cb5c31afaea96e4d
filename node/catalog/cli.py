"""Command-line subcommands of this area (registered by node.cli): ``tongban catalog ...``.

- ``tongban catalog load FILE --dir DIR``: load the node's catalogue from a TOML file (format in
  docs/catalog.md); all or nothing; items the file no longer lists are retired.
- ``tongban catalog list --dir DIR [--all]``: our items, then partners' cached ones (``--all``
  adds retired items).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from node.catalog.items import our_items, partner_items
from node.catalog.labels import MODE_LABELS
from node.catalog.loading import CatalogError, load_catalog_report
from node.config import NodeConfig
from node.federation.partners import load_partners
from node.storage.database import Database
from node.storage.migrate import upgrade
from protocol.catalog import Item

T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this area's subcommands to the `tongban` parser."""
    catalog = sub.add_parser("catalog", help="the service catalogue (事项目录)").add_subparsers()

    p = catalog.add_parser("load", help="load this node's catalogue from a TOML file")
    p.add_argument("file", type=Path, help="catalogue file (see docs/catalog.md)")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_load)

    p = catalog.add_parser("list", help="list our items and partners' cached items")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--all", action="store_true", help="include retired items")
    p.set_defaults(func=_list)


def _with_db(config: NodeConfig, work: Callable[[Database], Awaitable[T]]) -> T:
    async def go() -> T:
        db = Database(config.database_url)
        try:
            await upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def _load(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)
    try:
        report = _with_db(
            config,
            lambda db: load_catalog_report(db, config.region, args.file, region_name=config.name),
        )
    except CatalogError as exc:
        print(f"错误 / error: {exc.message}", file=sys.stderr)
        print("事项目录未作任何改动 (nothing changed)", file=sys.stderr)
        return 1
    print(f"已加载事项目录 loaded {len(report.loaded)} items for {config.region}")
    for label, codes in (
        ("新增 added", report.added),
        ("更新 changed", report.changed),
        ("恢复 restored", report.restored),
        ("停用 retired", report.retired),
    ):
        if codes:
            print(f"  {label}: {', '.join(codes)}")
    return 0


def _line(item: Item, region_name: str) -> str:
    modes = "、".join(MODE_LABELS[m] for m in item.modes)
    flags = " 勘验" if item.inspection.required else ""
    retired = " [已停用 retired]" if item.retired else ""
    return (
        f"{item.code}  {item.name}  {region_name}  {item.promised_limit_days}/"
        f"{item.legal_limit_days} 工作日  {modes}{flags}{retired}"
    )


def _list(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)
    names = {p.region: p.name for p in load_partners(config.partners_file).values()}
    names[config.region] = config.name

    async def read(db: Database) -> tuple[list[Item], list[Item]]:
        own = await our_items(db, include_retired=args.all)
        theirs = await partner_items(db, include_retired=args.all)
        return own, theirs

    own, theirs = _with_db(config, read)
    print(f"本地事项 our items ({config.region} {config.name}): {len(own)}")
    for item in own:
        print("  " + _line(item, config.name))
    print(f"伙伴事项 partners' items: {len(theirs)}")
    for item in theirs:
        region_name = names.get(item.handling_region, item.handling_region)
        print("  " + _line(item, region_name))
    return 0
