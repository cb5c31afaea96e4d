"""The `tongban` command (docs/operations.md)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from pathlib import Path

from aiohttp import web

from node.accounts import cli as accounts_cli
from node.cases import cli as cases_cli
from node.cases import recompute
from node.catalog import cli as catalog_cli
from node.config import ConfigError, NodeConfig, plain_http_refused
from node.federation import directory_cli
from node.federation.identity import rotate_key
from node.federation.partners import (
    PartnersFileError,
    load_partners,
    parse_partners,
    render_partners,
)
from node.federation.reseal import reseal_envelopes
from node.filemodes import set_private_umask
from node.provisioning import InitError, add_partner, init_node, self_entry
from node.storage.database import Database
from node.storage.sealing import (
    ResealHook,
    column_resealer,
    load_sealer,
    reseal,
    rotate_data_key,
)
from node.workdays import cli as workdays_cli

#: What `tongban keys reseal` re-seals, one hook per area that seals columns: the stored
#: envelopes, and the applicants' ID numbers and phones of the case domain (sealed there with
#: the places named here).
RESEAL_HOOKS: tuple[ResealHook, ...] = (
    reseal_envelopes,
    column_resealer("cases", "id", "applicant_id_number", "cases.applicant_id_number"),
    column_resealer("cases", "id", "applicant_phone", "cases.applicant_phone"),
    # 视频办: a call's callback phone, and the phones left for a callback.
    column_resealer("video_calls", "id", "phone", "video_calls.phone"),
    column_resealer("video_callbacks", "id", "phone", "video_callbacks.phone"),
)


def main(argv: list[str] | None = None) -> int:
    # Before anything is written: the database, blobs, keys and secrets are the node user's
    # only (docs/operations.md, File modes).
    set_private_umask()
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, InitError, PartnersFileError) as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tongban", description="Tongban (通办) federation node")
    sub = parser.add_subparsers()

    p = sub.add_parser("init", help="create a node: config, key, partners file, database")
    p.add_argument("--region", required=True, help="6-digit 行政区划代码")
    p.add_argument("--name", required=True)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--url", help="public base URL partners reach this node at")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8400)
    p.add_argument("--database-url", help="default: SQLite in DIR")
    p.set_defaults(func=_init)

    p = sub.add_parser("run", help="serve the node")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_run)

    p = sub.add_parser("demo", help="three partnered regions on one machine")
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("demo-data"),
        help="where the regions' node directories go (default: demo-data; kept between runs)",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=8400,
        help="衡阳市 on this port, 邵阳县 on the next, 东营市 on the one after (default 8400)",
    )
    p.set_defaults(func=_demo)

    p = sub.add_parser("doctor", help="check config, keys, database, partners, calendar")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_doctor)

    keys = sub.add_parser("keys", help="signing keys and data keys").add_subparsers()
    p = keys.add_parser("rotate", help="make a new signing key; partners learn it")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_keys_rotate)
    p = keys.add_parser(
        "rotate-data", help="add a new active data key (seals personal data at rest)"
    )
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_keys_rotate_data)
    p = keys.add_parser("reseal", help="seal every sealed or plaintext value with the active key")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_keys_reseal, hooks=RESEAL_HOOKS)

    partners = sub.add_parser("partners", help="the partners.toml trust root").add_subparsers()
    p = partners.add_parser("list", help="list partner regions")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_partners_list)
    p = partners.add_parser("self", help="print this node's entry for partners' partners.toml")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_partners_self)
    p = partners.add_parser("add", help="add the entries of a partners.toml snippet")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("file", type=Path, help="TOML with [[partners]] entries (from `partners self`)")
    p.set_defaults(func=_partners_add)
    p = sub.add_parser("backup", help="archive database, blobs and config (docs/operations.md)")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="archive file to write (.tar.gz)")
    p.add_argument(
        "--include-keys", action="store_true", help="also the private keys: the archive is secret"
    )
    p.set_defaults(func=_backup)
    p = sub.add_parser("restore", help="restore an archive into an empty database and blob store")
    p.add_argument("file", type=Path, help="archive written by `tongban backup`")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--database-url", help="when DIR has no tongban.toml yet: the database to fill")
    p.add_argument("--verify-only", action="store_true", help="check the archive, change nothing")
    p.set_defaults(func=_restore)
    for area in (accounts_cli, catalog_cli, cases_cli, directory_cli):
        area.register(sub)
    workdays_cli.register(sub, after_load=[recompute.recompute_provisional])
    return parser


def _init(args: argparse.Namespace) -> int:
    config = asyncio.run(
        init_node(
            args.dir,
            region=args.region,
            name=args.name,
            url=args.url,
            host=args.host,
            port=args.port,
            database_url=args.database_url,
        )
    )
    print(f"已创建节点 {config.name} ({config.region}) 于 {config.dir}")
    print(f"  url: {config.url}")
    print(f"  give partners the output of: tongban partners self --dir {config.dir}")
    return 0


def _run(args: argparse.Namespace) -> int:
    # Start-up makes some 160,000 objects that live as long as the process (modules, tables,
    # routes, every partner's keys) and little garbage (2,600 objects in cycles with 3,000
    # partners); the cyclic collector walked that growing heap again and again while it was
    # made, about a tenth of the start's CPU. It is off until the app has started, then on
    # again with all that frozen (gc.freeze: never walked again; that garbage is kept).
    gc.disable()
    from inspection.holding import replica_id
    from node.app import create_app
    from node.fdlimit import NEEDED as NEEDED_OPEN_FILES
    from node.fdlimit import raise_open_files_limit
    from node.http_timeouts import server_options
    from node.logging_setup import JsonAccessLogger, configure_logging
    from node.ops.tls import server_ssl_context

    config = NodeConfig.load(args.dir)
    configure_logging()
    open_files = raise_open_files_limit()
    if open_files < NEEDED_OPEN_FILES:
        logging.getLogger(__name__).warning(
            "open files limit is low: deliveries to partners catching up may fail (EMFILE)",
            extra={"open_files": open_files, "needed": NEEDED_OPEN_FILES},
        )
    host, port = args.host or config.host, args.port or config.port
    app = create_app(config, replica=replica_id(host, port, config.dir))
    app.on_startup.append(collect_garbage_from_now_on)
    web.run_app(
        app,
        **server_options(config.http),
        host=host,
        port=port,
        ssl_context=server_ssl_context(config),
        access_log=logging.getLogger("tongban.access"),
        access_log_class=JsonAccessLogger,
        print=lambda *_: None,
        shutdown_timeout=5,
    )
    return 0


#: The young generation is collected when this many more container objects were made than
#: freed (CPython's default is 700). A node's work is short-lived objects freed by reference
#: counting (an envelope's request, claims, rows), whose peaks kept passing 700: a sending
#: node ran 120 collections a second, 6 % of its CPU, mostly walking objects of requests
#: still in flight. At 10,000 the same 5,000-envelope run collects twice (bench/README.md);
#: what cyclic garbage waits meanwhile is a few megabytes at most.
YOUNG_COLLECTION_EVERY = 10_000


async def collect_garbage_from_now_on(_app: web.Application) -> None:
    """The app has started (``on_startup``, after its cleanup contexts): what start-up made
    is frozen and the cyclic garbage collector, off since ``_run`` began, is on again,
    collecting the young generation every ``YOUNG_COLLECTION_EVERY`` objects."""
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    gc.enable()


def _backup(args: argparse.Namespace) -> int:
    from node.ops.backup import BackupError, backup

    config = NodeConfig.load(args.dir)
    try:
        summary = asyncio.run(backup(config, args.out, include_keys=args.include_keys))
    except BackupError as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 1
    rows = sum(summary.tables.values())
    print(f"备份完成 backup written: {args.out}")
    print(f"  {len(summary.tables)} 张表 tables, {rows} 行 rows")
    print(f"  {summary.blobs} 个文件 blobs, {summary.blob_bytes} bytes")
    if summary.includes_keys:
        print(
            "  含私钥 includes private keys: 请按密钥同等级别保管 (keep it as secret as the keys)"
        )
    return 0


def _restore(args: argparse.Namespace) -> int:
    from node.ops.backup import BackupError, restore, verify_archive

    try:
        if args.verify_only:
            manifest = verify_archive(args.file).manifest
            rows = sum(t["rows"] for t in manifest["tables"])
            print(f"备份完整 archive intact: {manifest['region']} {manifest['name']}")
            print(f"  {rows} 行 rows, {len(manifest['blobs'])} 个文件 blobs")
            return 0
        config, summary = asyncio.run(restore(args.dir, args.file, database_url=args.database_url))
    except BackupError as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 1
    print(f"恢复完成 restored {config.name} ({config.region}) into {config.dir}")
    print(f"  {sum(summary.tables.values())} 行 rows, {summary.blobs} 个文件 blobs")
    for note in summary.notes:
        print(f"  {note}")
    print(f"  next: tongban audit verify --dir {config.dir}; tongban doctor --dir {config.dir}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from node.demo import run_demo

    return run_demo(args.dir, args.base_port)


def _doctor(args: argparse.Namespace) -> int:
    from node.doctor import main as doctor

    return doctor(NodeConfig.load(args.dir))


def _keys_rotate(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)

    async def go() -> tuple[str, str]:
        db = Database(config.database_url)
        try:
            return await rotate_key(config, db)
        finally:
            await db.dispose()

    old, new = asyncio.run(go())
    print(f"新签名密钥 new signing key: {new}")
    print(f"旧密钥 {old} 在宽限期内仍有效 (still valid through its grace period)")
    return 0


def _keys_rotate_data(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)
    new = rotate_data_key(config.dir)
    print(f"新数据密钥 new data key: {new}")
    print("  running replicas use it within 2 s; old keys stay to open what they sealed")
    print(f"  then: tongban keys reseal --dir {config.dir}")
    return 0


def _keys_reseal(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)
    sealer = load_sealer(config.dir)

    async def go() -> dict[str, int]:
        db = Database(config.database_url)
        try:
            return await reseal(db, sealer, args.hooks)
        finally:
            await db.dispose()

    moved = asyncio.run(go())
    print(f"已用数据密钥 {sealer.active} 重新加密 resealed with data key {sealer.active}:")
    for place, count in moved.items():
        print(f"  {place}: {count}")
    return 0


def _partners_list(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)
    for partner in load_partners(config.partners_file).values():
        kids = ", ".join(k.kid for k in partner.keys)
        print(f"{partner.region}  {partner.name}  {partner.url}  [{kids}]")
        refused = plain_http_refused(partner.url, config.federation)
        if refused is not None:
            print(f"  ! {refused}")
    return 0


def _partners_self(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)
    print(render_partners([asyncio.run(self_entry(config))]), end="")
    return 0


def _partners_add(args: argparse.Namespace) -> int:
    import tomllib

    config = NodeConfig.load(args.dir)
    entries = parse_partners(tomllib.loads(args.file.read_text(encoding="utf-8")))
    for partner in entries.values():
        if partner.region == config.region:
            raise InitError("a node is not its own partner")
        refused = plain_http_refused(partner.url, config.federation)
        if refused is not None:
            raise InitError(f"partner {partner.region}: {refused}")
    for partner in entries.values():
        add_partner(config, partner)
        print(f"已添加伙伴 added partner {partner.region} {partner.name}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
