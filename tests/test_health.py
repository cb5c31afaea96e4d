"""/healthz is liveness only; /readyz is 200 when the database is migrated to head and the
federation workers run, and 503 with stable reasons otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    nodes = [await RunningNode(c).start() for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


async def get(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_ready_when_migrated_and_workers_run(pair: list[RunningNode]) -> None:
    node = pair[0]
    assert await get(f"{node.url}/healthz") == (200, {"status": "ok"})
    assert await get(f"{node.url}/readyz") == (200, {"status": "ready", "partners": 1})


async def test_not_ready_when_the_schema_is_not_current(pair: list[RunningNode]) -> None:
    node = pair[0]
    async with node.db.write() as conn:
        heads = sorted(
            (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()
        )
        await conn.execute(text("DELETE FROM alembic_version"))
        await conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0001')"))
    status, body = await get(f"{node.url}/readyz")
    assert status == 503
    assert body["status"] == "not_ready" and body["reasons"] == ["schema_not_current"]
    assert body["schema"] == {"current": ["0001"], "expected": heads}
    # Liveness does not care: the process answers.
    assert (await get(f"{node.url}/healthz"))[0] == 200
    async with node.db.write() as conn:
        await conn.execute(text("DELETE FROM alembic_version"))
        for head in heads:
            await conn.execute(
                text("INSERT INTO alembic_version (version_num) VALUES (:h)"), {"h": head}
            )
    assert (await get(f"{node.url}/readyz"))[0] == 200


async def test_not_ready_when_the_federation_workers_stopped(pair: list[RunningNode]) -> None:
    node = pair[1]
    await node.fed.stop()
    status, body = await get(f"{node.url}/readyz")
    assert status == 503
    assert set(body["reasons"]) == {  # type: ignore[arg-type]
        "worker_stopped:watcher",
        "worker_stopped:applier",
        "worker_stopped:inbound_writer",
        "worker_stopped:delivery",
    }
    assert (await get(f"{node.url}/healthz"))[0] == 200


async def test_not_ready_when_the_database_is_unreachable(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    [config] = await make_configs(tmp_path, databases, [("430400", "衡阳市")], link=False)
    node = await RunningNode(config).start()
    try:
        # The node's engine now points at a database that cannot be opened.
        broken = tmp_path / "no-such-dir" / "x.db"
        from node.storage.database import Database

        good = node.fed.db
        node.fed.db = Database(f"sqlite+aiosqlite:///{broken}")
        try:
            status, body = await get(f"{node.url}/readyz")
        finally:
            await node.fed.db.dispose()
            node.fed.db = good
        assert status == 503 and body["reasons"] == ["database_unreachable"]
        assert "unable to open database" in str(body["database"])
    finally:
        await node.stop()
