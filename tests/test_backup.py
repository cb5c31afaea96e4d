"""Backup and restore: a node with real cases and uploads is archived while it runs, restored
into an empty database and blob folder, and verified with `tongban audit verify`; restore
refuses a database or blob store that is not empty, and an archive that was damaged."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import stat
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import MetaData, func, select

from node.cli import main as cli
from node.config import NodeConfig
from node.federation.models import INBOUND_TOKEN, OUTBOX_TOKEN, inbound_envelopes, outbox
from node.ops.backup import reflect
from node.storage.blobs import FolderBlobStore
from node.storage.database import Database
from node.storage.sealing import FILE as DATA_KEYS_FILE
from node.storage.sealing import PREFIX, Sealer, SealingError, load_sealer
from protocol.envelope import parse_envelope
from tests.support.api import ApiClient, pdf
from tests.support.databases import DatabaseFactory, using_postgres
from tests.support.forms import form_for
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for, start_regions
from tests.support.waiting import wait_until

ITEM = "430400-XK-0001"  # decided by 衡阳市
APPLICANT = {
    "kind": "org",
    "name": "邵阳县宏达建设有限公司",
    "id_type": "unified_social_credit_code",
    "id_number": "91430523MA4L0X1T2N",
    "phone": "13807390001",
}


async def run_cli(*argv: str) -> int:
    """The real `tongban` command (it runs its own event loop, so in a thread)."""
    return await asyncio.to_thread(cli, list(argv))


#: SQLite's FTS5 tables of the search index and their shadow tables: only SQLite has them, and
#: their segment counts depend on how the index was written, not on what it holds. The index
#: rows (catalog_entries, catalog_regions), rebuilt by the restore, are compared.
FTS_TABLES = ("catalog_search", "catalog_grams")


async def table_counts(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        async with db.read() as conn:
            meta = MetaData()
            await conn.run_sync(lambda c: reflect(meta, c))
            return {
                t.name: int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
                for t in meta.sorted_tables
                if t.name != "alembic_version" and not t.name.startswith(FTS_TABLES)
            }
    finally:
        await db.dispose()


def blob_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.glob("??/??/*") if p.is_file()}


@pytest.fixture
async def walked(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    """Two nodes with two cases walked across them: uploads, 受理, a decision with a result
    PDF, so both nodes hold cases, events, envelopes and blobs."""
    nodes = await start_regions(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    shaoyang, hengyang = nodes
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
        for n in range(2):
            created = await clerk.ok(
                "POST",
                "/api/v1/cases",
                {
                    "item_code": ITEM,
                    "mode": "proxy",
                    "applicant": APPLICANT,
                    "form": form_for(item, project_name=f"宏达商业广场{n}期"),
                    "materials": await materials_for(clerk, item),
                    "identity_verified": True,
                    "delivery": {"method": "window", "address": None},
                },
                status=201,
            )
            case_no = created["case"]["case_no"]
            incoming: dict[str, object] = {}

            async def arrived(case_no: str = case_no, seen: dict[str, object] = incoming) -> bool:
                listing = await approver.ok("GET", f"/api/v1/cases?q={case_no}")
                seen["cases"] = listing["cases"]
                return bool(listing["cases"])

            await wait_until(arrived)
            case_id = incoming["cases"][0]["id"]  # type: ignore[index]
            await approver.act(case_id, "accept", {"note": "材料齐全"})
            licence = await approver.upload(pdf(f"施工许可证 {n}"), "施工许可证.pdf")
            await approver.act(
                case_id,
                "decide",
                {
                    "outcome": "approved",
                    "certificate_no": f"43040020261122000{n}",
                    "documents": [{"blob": licence["sha256"], "name": "建筑工程施工许可证"}],
                },
            )

            async def approved_at_window(case_no: str = case_no) -> bool:
                listing = await clerk.ok("GET", f"/api/v1/cases?q={case_no}")
                return bool(listing["cases"]) and listing["cases"][0]["status"] == "approved"

            await wait_until(approved_at_window)
    yield nodes
    for node in nodes:
        await node.stop()


async def check_restored(
    source: NodeConfig, restored_dir: Path, capsys: pytest.CaptureFixture[str]
) -> NodeConfig:
    restored = NodeConfig.load(restored_dir)
    capsys.readouterr()
    assert await run_cli("audit", "verify", "--dir", str(restored_dir)) == 0
    assert "audit chains intact: 2" in capsys.readouterr().out
    source_counts = await table_counts(source.database_url)
    restored_counts = await table_counts(restored.database_url)
    assert restored_counts == source_counts
    assert source_counts["cases"] == 2 and source_counts["case_events"] >= 6
    original = blob_bytes(source.blob_dir)
    assert len(original) >= 3
    assert blob_bytes(restored.blob_dir) == original
    return restored


async def check_sealed(restored: NodeConfig, sealer: Sealer, *, opens: bool) -> None:
    """The restored envelope tokens are sealed, and open with ``sealer`` or not at all."""
    db = Database(restored.database_url)
    try:
        async with db.read() as conn:
            inbound = (await conn.execute(select(inbound_envelopes.c.token))).scalars().all()
            sent = (await conn.execute(select(outbox.c.token))).scalars().all()
    finally:
        await db.dispose()
    assert inbound and sent
    for place, tokens in ((INBOUND_TOKEN, inbound), (OUTBOX_TOKEN, sent)):
        for token in tokens:
            assert token.startswith(PREFIX)
            if opens:
                assert parse_envelope(sealer.open(token, place)).claims["jti"]
            else:
                with pytest.raises(SealingError):
                    sealer.open(token, place)


async def test_backup_of_a_running_node_restores_into_an_empty_database_and_verifies(
    walked: list[RunningNode],
    tmp_path: Path,
    databases: DatabaseFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _shaoyang, hengyang = walked
    archive = tmp_path / "backups" / "430400.tar.gz"
    source = hengyang.config
    assert await run_cli("backup", "--dir", str(source.dir), "--out", str(archive)) == 0
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600  # personal data inside
    assert await run_cli("restore", str(archive), "--dir", "/nonexistent", "--verify-only") == 0

    target = tmp_path / "restored"
    url = await databases.new_url("restored")
    assert await run_cli("restore", str(archive), "--dir", str(target), "--database-url", url) == 0
    # Restore says to put the data keys back: the sealed values need them.
    assert DATA_KEYS_FILE.as_posix() in capsys.readouterr().out
    restored = await check_restored(source, target, capsys)
    assert restored.database_url == url and restored.region == "430400"
    assert restored.partners_file.read_bytes() == source.partners_file.read_bytes()
    # Keys were not asked for: the archive has none, and restore says to put them back.
    assert not restored.key_file.exists()
    assert not (restored.dir / DATA_KEYS_FILE).exists()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json" and not any(n.endswith(".key") for n in names)
    assert not any(n.endswith(DATA_KEYS_FILE.name) for n in names)
    # The envelopes were copied sealed: without the node's data keys they do not open.
    await check_sealed(restored, load_sealer(source.dir), opens=True)
    await check_sealed(restored, load_sealer(tmp_path / "other-keys"), opens=False)


async def test_backup_with_keys_restores_them_with_mode_0600(
    walked: list[RunningNode],
    tmp_path: Path,
    databases: DatabaseFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shaoyang, _hengyang = walked
    archive = tmp_path / "430523-keys.tar.gz"
    source = shaoyang.config
    assert (
        await run_cli("backup", "--dir", str(source.dir), "--out", str(archive), "--include-keys")
        == 0
    )
    # The restore target is prepared by the operator: its own tongban.toml, an empty database.
    target = tmp_path / "prepared"
    target.mkdir()
    url = await databases.new_url("prepared")
    config_text = (source.dir / "tongban.toml").read_text(encoding="utf-8")
    config_text = "\n".join(
        line for line in config_text.splitlines() if not line.startswith("database_url")
    )
    (target / "tongban.toml").write_text(
        config_text.replace('blob_dir = "blobs"', f'database_url = "{url}"\nblob_dir = "blobs"'),
        encoding="utf-8",
    )
    assert await run_cli("restore", str(archive), "--dir", str(target)) == 0
    restored = await check_restored(source, target, capsys)
    assert restored.key_file.read_bytes() == source.key_file.read_bytes()
    assert stat.S_IMODE(os.stat(restored.key_file).st_mode) == 0o600
    # The data keys came along (0600), and the sealed envelopes open with them.
    keys = restored.dir / DATA_KEYS_FILE
    assert keys.read_bytes() == (source.dir / DATA_KEYS_FILE).read_bytes()
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    await check_sealed(restored, load_sealer(restored.dir), opens=True)
    # The restored node passes its own checks of key and database.
    from node.doctor import run_checks

    checks = {c.name: c.level for c in await run_checks(restored)}
    assert checks["key"] == "ok" and checks["database"] == "ok" and checks["identity"] == "ok"


async def test_restore_crosses_database_engines(
    walked: list[RunningNode],
    tmp_path: Path,
    databases: DatabaseFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SQLite → PostgreSQL or PostgreSQL → SQLite, whichever the test database is not."""
    if not using_postgres():
        pytest.skip("needs TONGBAN_TEST_DATABASE_URL (PostgreSQL) for the other engine")
    _shaoyang, hengyang = walked
    archive = tmp_path / "cross.tar.gz"
    assert await run_cli("backup", "--dir", str(hengyang.config.dir), "--out", str(archive)) == 0
    target = tmp_path / "on-sqlite"
    url = f"sqlite+aiosqlite:///{tmp_path / 'on-sqlite.db'}"
    assert await run_cli("restore", str(archive), "--dir", str(target), "--database-url", url) == 0
    await check_restored(hengyang.config, target, capsys)
    # … and back again into a fresh PostgreSQL database.
    again = tmp_path / "again.tar.gz"
    assert await run_cli("backup", "--dir", str(target), "--out", str(again)) == 0
    back = tmp_path / "on-postgres"
    pg_url = await databases.new_url("back")
    assert await run_cli("restore", str(again), "--dir", str(back), "--database-url", pg_url) == 0
    await check_restored(hengyang.config, back, capsys)


@pytest.fixture
async def small(tmp_path: Path, databases: DatabaseFactory) -> tuple[NodeConfig, Path]:
    """A node with one blob and its archive (no cases needed to test refusals)."""
    from node.provisioning import init_node

    config = await init_node(
        tmp_path / "src",
        region="430400",
        name="衡阳市",
        database_url=await databases.new_url("src"),
    )
    await FolderBlobStore(config.blob_dir).put_bytes(pdf("一份材料"))
    archive = tmp_path / "small.tar.gz"
    assert await run_cli("backup", "--dir", str(config.dir), "--out", str(archive)) == 0
    return config, archive


async def test_restore_refuses_a_database_or_blob_store_that_is_not_empty(
    small: tuple[NodeConfig, Path],
    tmp_path: Path,
    databases: DatabaseFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, archive = small
    before = await table_counts(config.database_url)
    capsys.readouterr()
    # Into the node it came from: the database has rows.
    assert await run_cli("restore", str(archive), "--dir", str(config.dir)) == 1
    assert "database_not_empty" in capsys.readouterr().err
    assert await table_counts(config.database_url) == before

    # An empty database, but a blob folder with a blob in it.
    target = tmp_path / "target"
    (target / "blobs").mkdir(parents=True)
    await FolderBlobStore(target / "blobs").put_bytes(b"left over")
    url = await databases.new_url("target")
    assert await run_cli("restore", str(archive), "--dir", str(target), "--database-url", url) == 1
    assert "blob_store_not_empty" in capsys.readouterr().err
    assert not (target / "tongban.toml").exists()


def rewrite(archive: Path, out: Path, change: dict[str, bytes]) -> None:
    """Copy ``archive`` with the named members' contents replaced (manifest untouched)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read()  # type: ignore[union-attr]
            data = change.get(info.name, data)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


async def test_a_damaged_archive_is_refused_before_anything_is_written(
    small: tuple[NodeConfig, Path],
    tmp_path: Path,
    databases: DatabaseFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _config, archive = small
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        keys_dump = tar.extractfile("tables/own_keys.jsonl").read()  # type: ignore[union-attr]
    blob = f"blobs/{manifest['blobs'][0]['sha256']}"
    damaged = {
        "row": {"tables/own_keys.jsonl": keys_dump.replace(b'"kid"', b'"kid" ', 1)},
        "blob": {blob: b"%PDF-1.4 not the bytes that were stored"},
    }
    cases = []
    for label, change in damaged.items():
        path = tmp_path / f"damaged-{label}.tar.gz"
        rewrite(archive, path, change)
        cases.append(path)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    cases.append(truncated)
    not_gzip = tmp_path / "bitflip.tar.gz"
    raw = bytearray(gzip.decompress(archive.read_bytes()))
    raw[raw.find(b"%PDF") + 12] ^= 0xFF  # one bit of the blob's bytes
    not_gzip.write_bytes(gzip.compress(bytes(raw)))
    cases.append(not_gzip)

    for path in cases:
        capsys.readouterr()
        assert await run_cli("restore", str(path), "--dir", "/nonexistent", "--verify-only") == 1
        assert "archive_corrupt" in capsys.readouterr().err, path.name
        target = tmp_path / f"into-{path.stem}"
        url = await databases.new_url("damaged")
        assert await run_cli("restore", str(path), "--dir", str(target), "--database-url", url) == 1
        assert "archive_corrupt" in capsys.readouterr().err
        assert not target.exists()
        assert sum((await table_counts(url)).values()) == 0


def test_restore_merges_archived_data_keys_into_a_keys_file_already_there(
    tmp_path: Path,
) -> None:
    """A node started in the restore directory before made data keys of its own: the archive's
    keys join them (its active key and index key win: the restored rows were sealed and indexed
    with them), the file stays 0600, and both keys' values open."""
    from node.ops.backup import _merge_data_keys

    archived_dir, here = tmp_path / "archived", tmp_path / "here"
    archived, mine = load_sealer(archived_dir), load_sealer(here)
    from_archive = archived.seal("13973900002", "cases.applicant_phone")
    from_here = mine.seal("13973900003", "cases.applicant_phone")
    target = here / DATA_KEYS_FILE
    assert _merge_data_keys(target, (archived_dir / DATA_KEYS_FILE).read_bytes())
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    merged = load_sealer(here)
    assert merged.active == archived.active and merged.index_key == archived.index_key
    assert merged.open(from_archive, "cases.applicant_phone") == "13973900002"
    assert merged.open(from_here, "cases.applicant_phone") == "13973900003"
    # Once merged, nothing changes again.
    assert not _merge_data_keys(target, (archived_dir / DATA_KEYS_FILE).read_bytes())
