"""Savepoints in a transaction (node/storage/savepoints.py): a body that raises is undone
alone and the transaction goes on; a body that ends keeps its changes, which commit or
roll back with the transaction. On SQLite and PostgreSQL, inline or not; on an inline SQLite
transaction the savepoints go straight to the ``sqlite3`` connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from node.storage.database import Database
from node.storage.savepoints import RELEASE, SavepointLost, Savepoints
from tests.support.databases import DatabaseFactory, using_postgres

metadata = MetaData()
things = Table(
    "savepoint_things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    Column("n", Integer, nullable=False),
)

#: (inline, whether the savepoints should go straight to sqlite3)
WAYS = [False, True]


class Refused(Exception):
    pass


@pytest.fixture
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await databases.new_url("savepoints"))
    async with database.write() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def _names(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        return {r.name: r.n for r in (await conn.execute(select(things.c.name, things.c.n)))}


async def _add(conn: AsyncConnection, name: str, n: int = 1) -> None:
    await conn.execute(insert(things).values(name=name, n=n))


@pytest.mark.parametrize("inline", WAYS)
async def test_where_the_savepoints_go(db: Database, inline: bool) -> None:
    async with db.write(inline=inline) as conn:
        savepoints = await Savepoints.of(conn)
        assert savepoints.direct is (inline and not using_postgres())


@pytest.mark.parametrize("inline", WAYS)
async def test_a_body_that_raises_is_undone_alone(db: Database, inline: bool) -> None:
    async with db.write(inline=inline) as conn:
        await _add(conn, "before")
        savepoints = await Savepoints.of(conn)
        async with savepoints.savepoint():
            await _add(conn, "kept")
        with pytest.raises(Refused):
            async with savepoints.savepoint():
                await _add(conn, "undone")
                await conn.execute(update(things).where(things.c.name == "kept").values(n=9))
                raise Refused
        async with savepoints.savepoint():
            await _add(conn, "after")
    assert await _names(db) == {"before": 1, "kept": 1, "after": 1}


@pytest.mark.parametrize("inline", WAYS)
async def test_a_failed_statement_in_a_savepoint_leaves_the_transaction_usable(
    db: Database, inline: bool
) -> None:
    """On PostgreSQL a failed statement aborts the transaction until the savepoint is rolled
    back to; on both, the savepoints after it go on and commit."""
    async with db.write(inline=inline) as conn:
        savepoints = await Savepoints.of(conn)
        async with savepoints.savepoint():
            await _add(conn, "one")
        for _ in range(3):  # the same savepoint name, used again after each undo
            with pytest.raises(IntegrityError):
                async with savepoints.savepoint():
                    await _add(conn, "two")
                    await _add(conn, "one")  # unique name taken
        async with savepoints.savepoint():
            await _add(conn, "three")
    assert await _names(db) == {"one": 1, "three": 1}


@pytest.mark.parametrize("inline", WAYS)
async def test_kept_savepoints_go_with_the_transaction(db: Database, inline: bool) -> None:
    with pytest.raises(Refused):
        async with db.write(inline=inline) as conn:
            savepoints = await Savepoints.of(conn)
            async with savepoints.savepoint():
                await _add(conn, "kept by the savepoint, lost with the transaction")
            raise Refused
    assert await _names(db) == {}
    async with db.write(inline=inline) as conn:
        savepoints = await Savepoints.of(conn)
        for n in range(50):
            async with savepoints.savepoint():
                await _add(conn, f"n{n}", n)
    assert await _names(db) == {f"n{n}": n for n in range(50)}


@pytest.mark.parametrize("inline", WAYS)
@pytest.mark.parametrize("undo_fails", [False, True])
async def test_a_cancelled_body_stays_cancelled(
    db: Database, inline: bool, undo_fails: bool
) -> None:
    """A cancellation inside a savepoint propagates as a cancellation, even when the undo
    fails too (a lost connection): turned into another exception it would be caught by the
    caller, and the task would go on instead of stopping."""
    inside = asyncio.Event()

    async def body() -> None:
        async with db.write(inline=inline) as conn:
            savepoints = await Savepoints.of(conn)
            async with savepoints.savepoint():
                await _add(conn, "cancelled")
                if undo_fails:
                    await conn.execute(text(RELEASE))  # nothing left to roll back to
                inside.set()
                await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _names(db) == {}


@pytest.mark.parametrize("inline", WAYS)
async def test_an_undo_that_fails_gives_the_transaction_up(db: Database, inline: bool) -> None:
    with pytest.raises(SavepointLost) as lost:
        async with db.write(inline=inline) as conn:
            await _add(conn, "before")
            savepoints = await Savepoints.of(conn)
            async with savepoints.savepoint():
                await _add(conn, "inside")
                await conn.execute(text(RELEASE))
                raise Refused
    assert lost.value.__cause__ is not None
    assert await _names(db) == {}
