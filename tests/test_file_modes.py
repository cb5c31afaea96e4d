"""File modes: the node directory is 0700, the database, secrets and blobs 0600, whatever the
umask of whoever ran `tongban init`, `restore` or the node; the `tongban` command itself runs
with umask 077; `tongban doctor` fails a node whose files others can read."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from node.config import NodeConfig
from node.doctor import run_checks
from node.ops.backup import backup, restore
from node.provisioning import init_node
from node.storage.blobs import FolderBlobStore, blob_key
from node.storage.database import Database
from tests.support.databases import DatabaseFactory, using_postgres

ROOT = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sqlite_file(config: NodeConfig) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    return (
        Path(config.database_url[len(prefix) :]) if config.database_url.startswith(prefix) else None
    )


async def test_a_new_node_is_private_whatever_the_umask(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    old = os.umask(0o022)  # what most shells have
    try:
        config = await init_node(
            tmp_path / "node",
            region="430400",
            name="衡阳市",
            database_url=None if not using_postgres() else await databases.new_url("modes"),
        )
        assert mode(config.dir) == 0o700
        assert mode(config.blob_dir) == 0o700
        assert mode(config.key_file) == 0o600
        assert mode(config.dir / "tongban.toml") == 0o600
        assert mode(config.dir / "secrets") == 0o700
        assert mode(config.dir / "secrets" / "staff-token.key") == 0o600
        db_file = sqlite_file(config)
        if db_file is not None:
            assert mode(db_file) == 0o600
            # SQLite gives -wal and -shm the mode of the database file.
            db = Database(config.database_url)
            try:
                async with db.write() as conn:
                    await conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
                for suffix in ("-wal", "-shm"):
                    extra = db_file.with_name(db_file.name + suffix)
                    assert extra.exists() and mode(extra) == 0o600, suffix
            finally:
                await db.dispose()
        store = FolderBlobStore(config.blob_dir)
        digest = await store.put_bytes(b"%PDF-1.4 a scan")
        blob = config.blob_dir / blob_key(digest)
        assert mode(blob) == 0o600
        assert mode(blob.parent) == 0o700 and mode(blob.parent.parent) == 0o700
        assert mode(config.blob_dir / "tmp") == 0o700
        # A store that makes its folder makes it private too.
        fresh = FolderBlobStore(tmp_path / "elsewhere" / "blobs")
        assert mode(fresh.root) == 0o700
    finally:
        os.umask(old)


async def test_restore_makes_a_private_node(tmp_path: Path, databases: DatabaseFactory) -> None:
    old = os.umask(0o022)
    try:
        source = await init_node(
            tmp_path / "source",
            region="430400",
            name="衡阳市",
            database_url=await databases.new_url("source"),
        )
        await FolderBlobStore(source.blob_dir).put_bytes(b"a blob")
        archive = tmp_path / "backup.tar.gz"
        await backup(source, archive, include_keys=True)
        target = tmp_path / "target"
        url = await databases.new_url("target")
        config, _summary = await restore(target, archive, database_url=url)
        assert mode(config.dir) == 0o700
        assert mode(config.blob_dir) == 0o700
        assert mode(config.dir / "secrets") == 0o700
        assert mode(config.dir / "secrets" / "staff-token.key") == 0o600
        assert mode(config.dir / "tongban.toml") == 0o600
        for path in config.blob_dir.rglob("*"):
            assert mode(path) == (0o700 if path.is_dir() else 0o600), path
        db_file = sqlite_file(config)
        if db_file is not None:
            assert mode(db_file) == 0o600
    finally:
        os.umask(old)


def test_the_tongban_command_runs_with_umask_077() -> None:
    show = "import os, sys; from node.cli import main; main([]); print(oct(os.umask(0)))"
    out = subprocess.run(
        [sys.executable, "-c", show],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        # started from a shell with the usual umask
        preexec_fn=lambda: os.umask(0o022),
    )
    assert out.stdout.strip().splitlines()[-1] == "0o77"


async def test_doctor_fails_files_others_can_read(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    config = await init_node(
        tmp_path / "node",
        region="430400",
        name="衡阳市",
        database_url=None if not using_postgres() else await databases.new_url("doctor"),
    )
    digest = await FolderBlobStore(config.blob_dir).put_bytes(b"a blob")

    async def files_check() -> list[str]:
        return [c.level for c in await run_checks(config) if c.name == "files"]

    assert await files_check() == ["ok"]
    loose = [
        config.dir,
        config.dir / "secrets" / "staff-token.key",
        config.blob_dir / blob_key(digest),
    ]
    db_file = sqlite_file(config)
    if db_file is not None:
        loose.append(db_file)
    for path in loose:
        path.chmod(0o755 if path.is_dir() else 0o644)
        checks = [c for c in await run_checks(config) if c.name == "files"]
        assert [c.level for c in checks] == ["fail"], path
        assert str(path) in checks[0].message and "chmod" in checks[0].message
        path.chmod(0o700 if path.is_dir() else 0o600)
    assert await files_check() == ["ok"]
