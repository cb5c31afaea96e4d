"""`tongban backup` and `tongban restore`: a logical, database-independent archive.

The archive is a gzip-compressed tar whose members come in this order:

``manifest.json``
    format name and version, when and where it was taken, the Alembic revisions of the
    database, and for every table its columns, row count and the sha256 of its dump; for every
    blob its sha256 and size; for every other file its path, size and sha256.
``tables/<table>.jsonl``
    one JSON object per row (column name to value; dates as ISO 8601 strings, bytes as
    base64), tables in foreign-key order, rows in primary-key order.
``node/tongban.toml``, ``node/partners.toml``
    the node's config and trust root.
``node/node.key``, ``node/keys/*.key``, ``node/secrets/staff-token.key``,
``node/secrets/data-keys.json``
    only with ``--include-keys``: the private signing keys, the staff token secret and the
    data keys (then the archive is a secret). Without it, a restored node makes a new staff
    token secret at its first start (staff log in again), and the sealed values of the dump
    (envelope tokens, applicants' personal data: node/storage/sealing.py) open only once the
    node's ``secrets/data-keys.json`` is put back: a backup and its keys are separate secrets.
``blobs/<sha256>``
    every blob file of the store.

All tables are read in one read transaction (REPEATABLE READ on PostgreSQL, one deferred
transaction on SQLite in WAL mode), so the dump is one consistent moment of a node that keeps
running. Blobs are listed after that transaction ends: blobs are written before the rows that
name them commit and are never deleted, so every blob the dump refers to is in the store.

Restore verifies the whole archive first (every digest and count), refuses a database or blob
store that is not empty, migrates the empty database to the archive's revisions, inserts the
rows in foreign-key order in one transaction, resets PostgreSQL sequences, migrates on to the
newest schema, and writes the blobs (each checked against its digest again). Sealed values are
copied as they are, never opened: neither backup nor restore needs the data keys. Because the dump
is logical, a SQLite backup restores into PostgreSQL and the other way round.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
import tomllib
import warnings
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, func, select, text
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncConnection

from node.accounts.service import token_secret_file
from node.catalog.index import ensure_index
from node.config import CONFIG_FILE, KEY_FILE, PARTNERS_FILE, NodeConfig
from node.federation.partners import PartnersFileError, parse_partners
from node.filemodes import open_private, private_dir, private_sqlite, replace_private
from node.storage.blobs import BlobStore, open_blob_store
from node.storage.database import Database
from node.storage.migrate import _MIGRATION_LOCK, alembic_config, upgrade
from node.storage.sealing import FILE as DATA_KEYS_FILE

FORMAT = "tongban-backup"
VERSION = 1
MANIFEST = "manifest.json"
#: Rows per INSERT batch on restore.
BATCH = 500
_SKIP_TABLES = {"alembic_version"}
#: The catalogue's search index (docs/catalog.md §6): derived from the cached catalogues and
#: our items, rebuilt by the node's next start (``ensure_index``); its FTS5 tables keep their
#: own bookkeeping rows, which no restore may overwrite.
_DERIVED_TABLES = {"catalog_entries", "catalog_regions"}
_DERIVED_PREFIXES = ("catalog_search", "catalog_grams")


def _skipped(name: str) -> bool:
    """Tables a backup leaves out and a restore expects to find as the schema made them."""
    return name in _SKIP_TABLES or name in _DERIVED_TABLES or name.startswith(_DERIVED_PREFIXES)


class BackupError(Exception):
    """Backup or restore cannot go on; the message starts with a stable code."""


@dataclass
class Summary:
    tables: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0
    files: list[str] = field(default_factory=list)
    includes_keys: bool = False
    notes: list[str] = field(default_factory=list)


# -- backup ------------------------------------------------------------------------------------


def _encode(value: object) -> object:
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot archive a {type(value).__name__}")


def reflect(meta: MetaData, sync_conn: Any) -> None:
    """The tables as the database has them (expression indexes are not needed for data)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        meta.reflect(sync_conn)


def _order(table: Table) -> list[Any]:
    pk = list(table.primary_key.columns)
    return pk or list(table.columns)


async def _dump_tables(
    db: Database, spool: Path
) -> tuple[list[str], list[dict[str, Any]], dict[str, Path]]:
    """Dump every table in one consistent read transaction; returns (alembic heads, table
    entries for the manifest, dump file per table)."""
    entries: list[dict[str, Any]] = []
    paths: dict[str, Path] = {}
    async with db.read() as raw:
        conn = raw
        if not db.is_sqlite:
            conn = await raw.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        async with conn.begin():
            heads = await conn.run_sync(
                lambda c: sorted(MigrationContext.configure(c).get_current_heads())
            )
            if not heads:
                raise BackupError("database_not_initialised: 数据库没有表结构 (run the node first)")
            meta = MetaData()
            await conn.run_sync(lambda c: reflect(meta, c))
            for table in meta.sorted_tables:
                if _skipped(table.name):
                    continue
                path = spool / f"{table.name}.jsonl"
                digest = hashlib.sha256()
                rows = 0
                names = [c.name for c in table.columns]
                with open(path, "wb") as out:
                    result = await conn.stream(select(table).order_by(*_order(table)))
                    async for row in result:
                        line = (
                            json.dumps(
                                dict(zip(names, row, strict=True)),
                                ensure_ascii=False,
                                default=_encode,
                                separators=(",", ":"),
                            )
                            + "\n"
                        ).encode("utf-8")
                        digest.update(line)
                        out.write(line)
                        rows += 1
                entries.append(
                    {
                        "name": table.name,
                        "columns": names,
                        "rows": rows,
                        "sha256": digest.hexdigest(),
                    }
                )
                paths[table.name] = path
    return heads, entries, paths


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No user or group names of the backup host in the archive."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _node_files(config: NodeConfig, include_keys: bool) -> list[tuple[str, Path, int]]:
    """(archive name, path, mode) of the node directory files that go into the archive."""
    files = [
        (f"node/{CONFIG_FILE}", config.dir / CONFIG_FILE, 0o644),
        (f"node/{PARTNERS_FILE}", config.partners_file, 0o644),
    ]
    if include_keys:
        files.append((f"node/{KEY_FILE}", config.key_file, 0o600))
        if config.retired_key_dir.is_dir():
            for path in sorted(config.retired_key_dir.glob("*.key")):
                files.append((f"node/keys/{path.name}", path, 0o600))
        secret = token_secret_file(config.dir)
        files.append((f"node/{secret.relative_to(config.dir).as_posix()}", secret, 0o600))
        files.append((f"node/{DATA_KEYS_FILE.as_posix()}", config.dir / DATA_KEYS_FILE, 0o600))
    return [f for f in files if f[1].is_file()]


async def backup(config: NodeConfig, out: Path, *, include_keys: bool = False) -> Summary:
    """Write the archive of ``config``'s node to ``out`` (mode 0600; replaced atomically)."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = Summary(includes_keys=include_keys)
    db = Database(config.database_url)
    with tempfile.TemporaryDirectory(prefix=".tongban-backup-", dir=out.parent) as spool_dir:
        try:
            heads, tables, dumps = await _dump_tables(db, Path(spool_dir))
        finally:
            await db.dispose()
        node_files = []
        for name, path, mode in _node_files(config, include_keys):
            data = path.read_bytes()
            node_files.append((name, data, mode))
        store = open_blob_store(config)
        try:
            blobs = [entry async for entry in store.list_blobs()]
        except BaseException:
            await store.close()
            raise
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "region": config.region,
            "name": config.name,
            "source_database": "sqlite" if db.is_sqlite else "postgresql",
            "alembic_heads": heads,
            "includes_keys": include_keys,
            "tables": tables,
            "files": [
                {"path": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                for n, d, _m in node_files
            ],
            "blobs": [{"sha256": sha, "size": size} for sha, size in blobs],
        }
        partial = out.with_name(out.name + ".part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
                _add_bytes(
                    tar, MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode()
                )
                for entry in tables:
                    tar.add(
                        dumps[entry["name"]],
                        arcname=f"tables/{entry['name']}.jsonl",
                        filter=_anonymous,
                    )
                    summary.tables[entry["name"]] = entry["rows"]
                for name, data, mode in node_files:
                    _add_bytes(tar, name, data, mode)
                    summary.files.append(name)
                for sha, size in blobs:
                    await _add_blob(tar, store, sha, size)
                    summary.blobs += 1
                    summary.blob_bytes += size
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            await store.close()
    return summary


async def _add_blob(tar: tarfile.TarFile, store: BlobStore, sha: str, size: int) -> None:
    """Append ``blobs/<sha>`` streamed from any store (tarfile's ``addfile`` wants a
    blocking file object; this writes the same header, data and padding)."""
    info = tarfile.TarInfo(f"blobs/{sha}")
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    assert tar.fileobj is not None
    header = info.tobuf(tar.format, tar.encoding, tar.errors)
    tar.fileobj.write(header)
    tar.offset += len(header)
    digest = hashlib.sha256()
    written = 0
    async with contextlib.aclosing(store.read_chunks(sha)) as chunks:
        async for chunk in chunks:
            chunk = chunk[: size - written]
            digest.update(chunk)
            tar.fileobj.write(chunk)
            written += len(chunk)
            if written >= size:
                break
    if written != size or digest.hexdigest() != sha:
        raise BackupError(
            f"blob_corrupt: 存储中的文件内容与其摘要不符 {sha} in {store.describe()} "
            "(the blob store itself is damaged)"
        )
    blocks, remainder = divmod(size, tarfile.BLOCKSIZE)
    if remainder:
        tar.fileobj.write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))
        blocks += 1
    tar.offset += blocks * tarfile.BLOCKSIZE
    tar.members.append(info)


# -- reading and verifying an archive ----------------------------------------------------------


@dataclass
class _Verified:
    manifest: dict[str, Any]
    node_files: dict[str, bytes]


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r|gz")
    except FileNotFoundError as exc:
        raise BackupError(f"archive_missing: {archive} 不存在") from exc
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"archive_corrupt: {archive}: {exc}") from exc


def _members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    for info in tar:
        if not info.isfile():
            raise BackupError(f"archive_corrupt: unexpected member {info.name!r}")
        handle = tar.extractfile(info)
        assert handle is not None
        yield info, handle


def _read_manifest(info: tarfile.TarInfo, handle: IO[bytes]) -> dict[str, Any]:
    if info.name != MANIFEST:
        raise BackupError("archive_corrupt: the archive does not start with manifest.json")
    try:
        manifest = json.loads(handle.read())
    except ValueError as exc:
        raise BackupError(f"archive_corrupt: manifest.json: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError("archive_not_tongban: 不是 Tongban 备份文件")
    if manifest.get("version") != VERSION:
        raise BackupError(
            f"archive_version_unsupported: format version {manifest.get('version')} "
            f"(this Tongban reads {VERSION})"
        )
    return manifest


def verify_archive(archive: Path) -> _Verified:
    """Read the whole archive and check every member against the manifest."""
    node_files: dict[str, bytes] = {}
    try:
        with _open(archive) as tar:
            members = _members(tar)
            first = next(members, None)
            if first is None:
                raise BackupError("archive_corrupt: empty archive")
            manifest = _read_manifest(*first)
            expected: dict[str, tuple[int | None, str]] = {}
            for entry in manifest["tables"]:
                expected[f"tables/{entry['name']}.jsonl"] = (None, entry["sha256"])
            for entry in manifest["files"]:
                expected[entry["path"]] = (entry["size"], entry["sha256"])
            for entry in manifest["blobs"]:
                expected[f"blobs/{entry['sha256']}"] = (entry["size"], entry["sha256"])
            rows = {f"tables/{e['name']}.jsonl": e["rows"] for e in manifest["tables"]}
            seen: set[str] = set()
            for info, handle in members:
                if info.name not in expected or info.name in seen:
                    raise BackupError(f"archive_corrupt: unexpected member {info.name!r}")
                seen.add(info.name)
                size, sha = expected[info.name]
                digest = hashlib.sha256()
                lines = 0
                keep = info.name.startswith("node/")
                kept = bytearray()
                while chunk := handle.read(256 * 1024):
                    digest.update(chunk)
                    lines += chunk.count(b"\n")
                    if keep:
                        kept += chunk
                if digest.hexdigest() != sha or (size is not None and info.size != size):
                    raise BackupError(f"archive_corrupt: {info.name}: sha256 does not match")
                if info.name in rows and lines != rows[info.name]:
                    raise BackupError(f"archive_corrupt: {info.name}: row count does not match")
                if keep:
                    node_files[info.name] = bytes(kept)
            missing = set(expected) - seen
            if missing:
                raise BackupError(
                    f"archive_corrupt: {len(missing)} members missing, e.g. {sorted(missing)[0]}"
                )
    except (tarfile.TarError, OSError, EOFError, zlib.error, KeyError, TypeError) as exc:
        if isinstance(exc, BackupError):
            raise
        raise BackupError(f"archive_corrupt: {archive}: {type(exc).__name__}: {exc}") from exc
    return _Verified(manifest, node_files)


# -- restore -----------------------------------------------------------------------------------


def restore_config(
    directory: Path, verified: _Verified, database_url: str | None = None
) -> tuple[NodeConfig, str | None]:
    """The config to restore into: ``DIR/tongban.toml`` if it exists, otherwise the archived
    one (with ``database_url`` replaced when given). Returns (config, toml text to write or
    None when DIR already has its config)."""
    directory = directory.resolve()
    existing = directory / CONFIG_FILE
    if existing.exists():
        if database_url:
            raise BackupError(
                f"conflicting_config: {existing} exists; set database_url there, "
                "not with --database-url"
            )
        return NodeConfig.load(directory), None
    archived = verified.node_files.get(f"node/{CONFIG_FILE}")
    if archived is None:
        raise BackupError(f"config_missing: {existing} 不存在，且备份中没有 tongban.toml")
    text = archived.decode("utf-8")
    data = tomllib.loads(text)
    if database_url:
        lines = [ln for ln in text.splitlines() if not ln.strip().startswith("database_url")]
        # Top-level keys must come before the first [table].
        at = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
        lines.insert(at, f"database_url = {json.dumps(database_url)}")
        text = "\n".join(lines) + "\n"
        data = tomllib.loads(text)
    return NodeConfig.from_dict(directory, data), text


async def _check_empty(db: Database, blobs: BlobStore) -> list[str]:
    """The database's current revisions; refuses one that holds any row, or a blob store that
    holds any blob."""
    async with db.read() as conn:
        meta = MetaData()
        await conn.run_sync(lambda c: reflect(meta, c))
        for table in meta.sorted_tables:
            if _skipped(table.name):
                continue
            count = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            if count:
                raise BackupError(
                    f"database_not_empty: 数据库表 {table.name} 中已有 {count} 行；"
                    "只能恢复到空数据库 (restore only into an empty database)"
                )
        heads = await conn.run_sync(
            lambda c: sorted(MigrationContext.configure(c).get_current_heads())
        )
    async for _blob in blobs.list_blobs():
        raise BackupError(
            f"blob_store_not_empty: 文件存储 {blobs.describe()} 不是空的；只能恢复到空存储"
        )
    return heads


async def _migrate_to(db: Database, heads: list[str]) -> None:
    def run(sync_conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        for head in heads:
            command.upgrade(cfg, head)

    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        await conn.run_sync(run)


def _decoder(column: Any) -> Callable[[Any], Any]:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return lambda v: v
    if python_type is dt.datetime:
        return lambda v: None if v is None else dt.datetime.fromisoformat(v)
    if python_type is dt.date:
        return lambda v: None if v is None else dt.date.fromisoformat(v)
    if python_type is dt.time:
        return lambda v: None if v is None else dt.time.fromisoformat(v)
    if python_type is bytes:
        return lambda v: None if v is None else base64.b64decode(v)
    if python_type is Decimal:
        return lambda v: None if v is None else Decimal(v)
    return lambda v: v


async def _reset_sequences(conn: AsyncConnection, tables: list[Table]) -> None:
    """PostgreSQL: move each serial/identity sequence past the restored ids."""
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1:
            continue
        column = pk[0].name
        sequence = (
            await conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}
            )
        ).scalar_one()
        if sequence is None:
            continue
        await conn.execute(
            text(
                f'SELECT setval(:s, COALESCE((SELECT MAX("{column}") FROM "{table.name}"), 1), '
                f'(SELECT MAX("{column}") FROM "{table.name}") IS NOT NULL)'
            ),
            {"s": sequence},
        )


async def _rows(
    handle: IO[bytes], decoders: dict[str, Callable[[Any], Any]]
) -> AsyncIterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for line in handle:
        row = json.loads(line)
        batch.append({k: decoders[k](v) for k, v in row.items()})
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def restore(
    directory: Path, archive: Path, *, database_url: str | None = None
) -> tuple[NodeConfig, Summary]:
    """Restore ``archive`` into the node directory ``directory`` (see the module docstring)."""
    verified = verify_archive(archive)
    manifest = verified.manifest
    config, config_text = restore_config(directory, verified, database_url)
    known = set()
    for revision in ScriptDirectory.from_config(alembic_config()).walk_revisions():
        known.add(revision.revision)
    unknown = [h for h in manifest["alembic_heads"] if h not in known]
    if unknown:
        raise BackupError(
            f"archive_newer_than_code: 备份来自更新版本的 Tongban (schema {', '.join(unknown)}); "
            "请先升级本节点软件"
        )
    summary = Summary(includes_keys=bool(manifest.get("includes_keys")))
    private_dir(config.dir)  # SQLite in DIR needs the folder; 0700 like `tongban init`
    private_sqlite(config.database_url)
    db = Database(config.database_url)
    blobs = open_blob_store(config)
    try:
        current = await _check_empty(db, blobs)
        if current and set(current) != set(manifest["alembic_heads"]):
            raise BackupError(
                f"schema_mismatch: 空数据库的结构版本 {current} 与备份 "
                f"{manifest['alembic_heads']} 不同；请恢复到新建的空数据库"
            )
        await _migrate_to(db, manifest["alembic_heads"])
        meta = MetaData()
        async with db.read() as conn:
            await conn.run_sync(lambda c: reflect(meta, c))
        by_name = {e["name"]: e for e in manifest["tables"]}
        with _open(archive) as tar:
            members = _members(tar)
            next(members)  # manifest, verified above
            async with contextlib.AsyncExitStack() as rows_txn:
                # One transaction for every row: committed (and the schema brought to the
                # newest) when the first member after the tables comes, rolled back on error.
                conn: AsyncConnection | None = await rows_txn.enter_async_context(db.write())
                inserted: list[Table] = []
                for info, handle in members:
                    if info.name.startswith("tables/"):
                        assert conn is not None
                        inserted.append(await _insert_table(conn, meta, by_name, info, handle))
                        summary.tables[inserted[-1].name] = by_name[inserted[-1].name]["rows"]
                        continue
                    if conn is not None:
                        await _finish_rows(db, conn, inserted, rows_txn)
                        conn = None
                    if info.name.startswith("blobs/"):
                        size = await _put_blob(blobs, info, handle)
                        summary.blobs += 1
                        summary.blob_bytes += size
                if conn is not None:
                    await _finish_rows(db, conn, inserted, rows_txn)
        # The search index is not in the archive: made again from the restored catalogues.
        await ensure_index(db, config.region, _region_names(config, verified))
    finally:
        await blobs.close()
        await db.dispose()
    private_sqlite(config.database_url)
    summary.notes += _write_node_files(config, verified, config_text)
    return config, summary


async def _insert_table(
    conn: AsyncConnection,
    meta: MetaData,
    manifest_tables: dict[str, dict[str, Any]],
    info: tarfile.TarInfo,
    handle: IO[bytes],
) -> Table:
    name = info.name.removeprefix("tables/").removesuffix(".jsonl")
    table = meta.tables.get(name)
    columns = [c.name for c in table.columns] if table is not None else None
    if table is None or columns != manifest_tables[name]["columns"]:
        raise BackupError(
            f"schema_mismatch: table {name}: archive columns "
            f"{manifest_tables[name]['columns']} vs database {columns}"
        )
    decoders = {c.name: _decoder(c) for c in table.columns}
    async for batch in _rows(handle, decoders):
        await conn.execute(table.insert(), batch)
    return table


async def _finish_rows(
    db: Database, conn: AsyncConnection, inserted: list[Table], txn: contextlib.AsyncExitStack
) -> None:
    if not db.is_sqlite:
        await _reset_sequences(conn, inserted)
    await txn.aclose()  # commit
    await upgrade(db)


async def _put_blob(blobs: BlobStore, info: tarfile.TarInfo, handle: IO[bytes]) -> int:
    sha = info.name.removeprefix("blobs/")

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := handle.read(256 * 1024):
            yield chunk

    _sha, size, _created = await blobs.put_stream(chunks(), max_bytes=info.size, expected=sha)
    return size


def _region_names(config: NodeConfig, verified: _Verified) -> dict[str, str]:
    """Region → name for the search index: this node and the archived partners.toml."""
    names = {config.region: config.name}
    text = verified.node_files.get(f"node/{PARTNERS_FILE}")
    if text is not None:
        try:
            partners = parse_partners(tomllib.loads(text.decode("utf-8")))
        except (PartnersFileError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            partners = {}
        names |= {region: partner.name for region, partner in partners.items()}
    return names


def _write_node_files(
    config: NodeConfig, verified: _Verified, config_text: str | None
) -> list[str]:
    """Write the archived config, trust root and keys where the directory lacks them."""
    notes = []
    private_dir(config.dir)
    if config_text is not None:
        with os.fdopen(open_private(config.dir / CONFIG_FILE), "w", encoding="utf-8") as handle:
            handle.write(config_text)
        notes.append(f"写入 wrote {config.dir / CONFIG_FILE}")
    for name, data in sorted(verified.node_files.items()):
        relative = name.removeprefix("node/")
        if relative == CONFIG_FILE:
            continue
        target = config.dir / relative
        if relative == DATA_KEYS_FILE.as_posix() and target.exists():
            if _merge_data_keys(target, data):
                notes.append(f"合并数据密钥 merged the archived data keys into {target}")
            continue
        if target.exists():
            if target.read_bytes() != data:
                notes.append(f"保留现有文件 kept the existing {target} (differs from the archive)")
            continue
        if not target.parent.is_dir():
            private_dir(target.parent)
        with os.fdopen(open_private(target), "wb") as handle:
            handle.write(data)
        notes.append(f"写入 wrote {target}")
    if not (config.dir / DATA_KEYS_FILE).exists():
        notes.append(
            f"备份中没有数据密钥：请把 {DATA_KEYS_FILE} 从密钥备份放回 {config.dir} 后再启动节点，"
            "否则加密保存的数据无法读取 (the archive has no data keys: put "
            f"{DATA_KEYS_FILE} back before `tongban run`, or the sealed values do not open)"
        )
    if not config.key_file.exists():
        notes.append(
            f"备份中没有私钥：请把 node.key（及 keys/）从密钥备份放回 {config.dir} 后再启动节点 "
            "(the archive has no keys: put node.key back before `tongban run`)"
        )
    return notes


def _merge_data_keys(target: Path, archived: bytes) -> bool:
    """Put the archive's data keys into the existing keys file ``target`` (made by a node
    started in this directory before). The restored rows were sealed and indexed with the
    archive's keys, so its active key and index key win; the existing keys stay, to open
    whatever they sealed. Returns whether the file changed."""
    mine = json.loads(target.read_text(encoding="utf-8"))
    theirs = json.loads(archived)
    known = {entry["id"] for entry in mine["keys"]}
    merged = {
        **mine,
        "keys": [*mine["keys"], *(e for e in theirs["keys"] if e["id"] not in known)],
        "active": theirs["active"],
        "index_key": theirs["index_key"],
    }
    if merged == mine:
        return False
    replace_private(target, json.dumps(merged, indent=1))
    return True
