"""Making nodes: what `tongban init` writes, and how nodes are partnered with each other."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import select

from node.accounts.service import ensure_token_secret
from node.config import CONFIG_FILE, NodeConfig
from node.federation.identity import register_new_key, write_private_key
from node.federation.models import own_keys
from node.federation.partners import Partner, load_partners, render_partners
from node.filemodes import PRIVATE_FILE, private_dir, private_sqlite
from node.storage.database import Database
from node.storage.migrate import upgrade
from protocol.keys import REGION_RE, TrustedKey, generate_private_key, load_public_key_text, utc


class InitError(Exception):
    pass


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def init_node(
    directory: Path,
    *,
    region: str,
    name: str,
    url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8400,
    database_url: str | None = None,
    extra_toml: str = "",
) -> NodeConfig:
    """Write tongban.toml, node.key, partners.toml and the staff token secret
    (secrets/staff-token.key), and create the database and the blob folder: the directory and
    its folders 0700, every file 0600 (a SQLite database included), whatever the umask."""
    if not REGION_RE.match(region):
        raise InitError(f"region {region!r} is not a 6-digit 行政区划代码")
    directory = directory.resolve()
    if (directory / CONFIG_FILE).exists():
        raise InitError(f"{directory / CONFIG_FILE} exists already")
    private_dir(directory)
    url = (url or f"http://{host}:{port}").rstrip("/")
    if not re.match(r"^https?://", url):
        raise InitError("url must start with http:// or https://")
    lines = [
        "# Tongban node configuration (written by `tongban init`).",
        f'region = "{region}"',
        f"name = {_toml_string(name)}",
        f"url = {_toml_string(url)}",
        f"host = {_toml_string(host)}",
        f"port = {port}",
        'blob_dir = "blobs"',
    ]
    if database_url:
        lines.append(f"database_url = {_toml_string(database_url)}")
    text = "\n".join(lines) + "\n" + (extra_toml.strip() + "\n" if extra_toml.strip() else "")
    (directory / CONFIG_FILE).write_text(text, encoding="utf-8")
    os.chmod(directory / CONFIG_FILE, PRIVATE_FILE)
    config = NodeConfig.load(directory)
    key = generate_private_key()
    write_private_key(config.key_file, key)
    if not config.partners_file.exists():
        config.partners_file.write_text(render_partners([]), encoding="utf-8")
        os.chmod(config.partners_file, PRIVATE_FILE)
    private_dir(config.blob_dir)
    private_sqlite(config.database_url)
    db = Database(config.database_url)
    try:
        await upgrade(db)
        await register_new_key(config, db, key)
        await ensure_token_secret(db, config.dir)
    finally:
        await db.dispose()
    private_sqlite(config.database_url)  # -wal and -shm, should SQLite have made them otherwise
    return config


async def self_entry(config: NodeConfig) -> Partner:
    """This node as a partners.toml entry: what it hands to partner regions."""
    db = Database(config.database_url)
    try:
        async with db.read() as conn:
            rows = (await conn.execute(select(own_keys))).all()
    finally:
        await db.dispose()
    keys = tuple(
        TrustedKey(
            kid=row.kid,
            region=config.region,
            public_key=load_public_key_text(row.public_key),
            not_before=utc(row.not_before),
            not_after=utc(row.not_after),
        )
        for row in rows
    )
    return Partner(region=config.region, name=config.name, url=config.url, keys=keys)


def add_partner(config: NodeConfig, partner: Partner) -> None:
    """Add or replace ``partner`` in this node's partners.toml."""
    partners = load_partners(config.partners_file)
    partners[partner.region] = partner
    config.partners_file.write_text(render_partners(list(partners.values())), encoding="utf-8")


async def link_all(configs: list[NodeConfig]) -> None:
    """Partner every node with every other (the demo, and tests)."""
    entries = [await self_entry(c) for c in configs]
    for config in configs:
        for entry in entries:
            if entry.region != config.region:
                add_partner(config, entry)
