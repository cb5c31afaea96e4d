"""``tongban directory ...`` (registered by node.cli; docs/operations.md "Partner directory").

For the authority (a province or the national platform):

- ``init-authority --authority ID --out FOLDER``: a new signing key (0600) in its own folder;
  prints the public key nodes put in ``[directory] authority_keys``.
- ``build --out FILE SOURCE...``: the unsigned directory (JSON) from partners.toml-style files
  (``tongban partners self`` output), node descriptors (``*.jwt``) or folders of them.
- ``sign --authority-dir FOLDER --in FILE --out FILE [--serial N] [--lifetime-days D]``: the
  signed directory; the serial defaults to the larger of now (UNIX seconds) and the serial of
  the directory in ``--out`` plus one, so it always grows.
- ``serve --file FILE [--host H] [--port P]``: serve it with an ETag (304 when unchanged).

For a node: ``status --dir DIR [--json]``: the directory in force, its age and the last error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from node.config import NodeConfig
from node.federation.directory_authority import (
    DEFAULT_LIFETIME,
    AuthorityError,
    entries_from,
    init_authority,
    load_authority,
    read_unsigned,
    signed_directory,
    unsigned_directory,
)
from node.federation.directory_server import directory_app
from node.federation.directory_state import report
from protocol.directory import MAX_DIRECTORY_BYTES, TYP
from protocol.errors import ProtocolError
from protocol.jws import parse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    directory = sub.add_parser(
        "directory", help="the signed partner directory (authority and nodes)"
    ).add_subparsers()

    p = directory.add_parser("init-authority", help="make a directory authority's signing key")
    p.add_argument("--authority", required=True, help='authority id, e.g. "430000"')
    p.add_argument("--out", required=True, type=Path, help="new folder for the key")
    p.set_defaults(func=_init_authority)

    p = directory.add_parser("build", help="unsigned directory JSON from regions' entries")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "sources", nargs="+", type=Path, help="partners.toml-style files, *.jwt descriptors, dirs"
    )
    p.set_defaults(func=_build)

    p = directory.add_parser("sign", help="sign an unsigned directory with the authority key")
    p.add_argument("--authority-dir", required=True, type=Path)
    p.add_argument("--in", dest="source", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--serial", type=int, help="default: max(now, serial in --out + 1)")
    p.add_argument("--lifetime-days", type=float, default=DEFAULT_LIFETIME / 86400)
    p.set_defaults(func=_sign)

    p = directory.add_parser("serve", help="serve the signed directory over HTTP with ETag")
    p.add_argument("--file", required=True, type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8500)
    p.set_defaults(func=_serve)

    p = directory.add_parser("status", help="the directory this node follows")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)


def _fail(exc: Exception) -> int:
    print(f"错误 / error: {exc}", file=sys.stderr)
    return 1


def _init_authority(args: argparse.Namespace) -> int:
    try:
        authority = init_authority(args.out, args.authority)
    except AuthorityError as exc:
        return _fail(exc)
    print(f"已创建目录签发机构密钥 authority key made: {authority.kid}")
    print("  nodes put this in tongban.toml:")
    print("  [directory]")
    print(f'  authority = "{authority.authority}"')
    print(f'  authority_keys = ["{authority.public_key}"]')
    return 0


def _build(args: argparse.Namespace) -> int:
    try:
        unsigned = unsigned_directory(entries_from(args.sources, now=time.time()))
    except AuthorityError as exc:
        return _fail(exc)
    args.out.write_text(json.dumps(unsigned, ensure_ascii=False, indent=1) + "\n", "utf-8")
    print(f"已生成未签名目录 unsigned directory: {len(unsigned['regions'])} regions → {args.out}")
    return 0


def _previous_serial(path: Path) -> int:
    """The serial of the directory already at ``path`` (our own output), or 0."""
    try:
        claims = parse(path.read_bytes().strip(), typ=TYP, max_size=MAX_DIRECTORY_BYTES).claims
    except (OSError, ProtocolError):
        return 0
    serial = claims.get("serial")
    return serial if isinstance(serial, int) and not isinstance(serial, bool) else 0


def _sign(args: argparse.Namespace) -> int:
    now = time.time()
    serial = args.serial or max(int(now), _previous_serial(args.out) + 1)
    try:
        authority = load_authority(args.authority_dir)
        token = signed_directory(
            authority,
            read_unsigned(args.source),
            serial=serial,
            now=now,
            lifetime=int(args.lifetime_days * 86400),
        )
    except AuthorityError as exc:
        return _fail(exc)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(token, encoding="ascii")
    tmp.replace(args.out)
    print(f"已签发目录 directory signed: serial {serial} by {authority.kid} → {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    print(f"serving {args.file} at http://{args.host}:{args.port}/directory")
    web.run_app(directory_app(args.file), host=args.host, port=args.port, print=lambda *_: None)
    return 0


def _status(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)
    now = time.time()
    found = report(config, now)
    if args.json:
        print(json.dumps(found.to_json(now), ensure_ascii=False, indent=1))
    else:
        for line in status_lines(found.to_json(now), now):
            print(line)
    return 0 if found.in_force is not None or not found.configured else 1


def status_lines(data: dict[str, Any], now: float) -> list[str]:
    """The report (``DirectoryReport.to_json`` at ``now``) for people (zh-CN first)."""
    if not data["configured"]:
        return ["未配置伙伴目录 no [directory] in tongban.toml: partners.toml only"]
    lines = [f"目录地址 url: {data['url']}"]
    force = data["in_force"]
    if isinstance(force, dict):
        lines.append(
            f"生效目录 in force: serial {force['serial']} from {force['iss']}, "
            f"{force['regions']} regions, age {force['age_seconds']:.0f} s, "
            f"expires in {force['expires_in_seconds']:.0f} s"
        )
    else:
        why = data["kept_refused"] or "none fetched yet"
        lines.append(f"无生效目录 no directory in force ({why})")
    if data["checked_at"]:
        ago = now - float(data["checked_at"])
        lines.append(f"上次检查 last checked: {ago:.0f} s ago")
    if data["last_error"]:
        lines.append(f"上次错误 last error: {data['last_error']} ({data['last_error_detail']})")
    return lines
