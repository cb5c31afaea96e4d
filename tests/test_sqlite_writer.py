"""SQLite's writer connection: an inline transaction (``Database.write(inline=True)``) runs
its statements on the event loop's thread and gives the same results as a threaded one;
what may wait (``BEGIN IMMEDIATE`` behind another process's lock) never blocks the loop.
(node/storage/sqlite_writer.py.)"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from node.storage.database import Database
from node.storage.sqlite_writer import InlineableConnection
from tests.support.databases import DatabaseFactory, using_postgres

pytestmark = pytest.mark.skipif(using_postgres(), reason="the inline writer is SQLite's")

#: How long another connection holds the write lock, seconds.
HOLD = 1.5

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    Column("n", Integer, nullable=False),
)


@pytest.fixture
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await databases.new_url("inline"))
    async with database.write() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def _thread_of_statements(db: Database, *, inline: bool) -> int:
    async with db.write(inline=inline) as conn:
        adapted = (await conn.get_raw_connection()).dbapi_connection
        assert isinstance(adapted, InlineableConnection)
        # A function that SQLite calls back while running the statement: on its thread.
        adapted.raw.create_function("running_thread", 0, threading.get_ident)
        return int((await conn.execute(select(func.running_thread()))).scalar_one())


async def test_inline_statements_run_on_the_loop_and_others_in_the_connection_thread(
    db: Database,
) -> None:
    loop_thread = threading.get_ident()
    assert await _thread_of_statements(db, inline=True) == loop_thread
    assert await _thread_of_statements(db, inline=False) != loop_thread
    # Switched back after an inline transaction: the next plain one is threaded again.
    assert await _thread_of_statements(db, inline=True) == loop_thread
    assert await _thread_of_statements(db, inline=False) != loop_thread


async def test_an_inline_transaction_gives_the_results_of_a_threaded_one(
    db: Database,
) -> None:
    results = {}
    for inline in (False, True):
        prefix = "inline" if inline else "threaded"
        async with db.write(inline=inline) as conn:
            inserted = (
                await conn.execute(
                    things.insert().returning(things.c.id, things.c.name),
                    [{"name": f"{prefix}-{i}", "n": i} for i in range(3)],
                )
            ).all()
            many = await conn.execute(
                update(things)
                .where(things.c.name == bindparam("b_name"))
                .values(n=bindparam("b_n")),
                [{"b_name": f"{prefix}-{i}", "b_n": 10 + i} for i in range(3)],
            )
            one = await conn.execute(
                update(things).where(things.c.name.like(f"{prefix}-%")).values(n=things.c.n + 1)
            )
            rows = (
                await conn.execute(
                    select(things.c.name, things.c.n)
                    .where(things.c.name.like(f"{prefix}-%"))
                    .order_by(things.c.name)
                )
            ).all()
            scalar = (
                await conn.execute(
                    select(func.sum(things.c.n)).where(things.c.name.like(f"{prefix}-%"))
                )
            ).scalar_one()
        results[inline] = (
            [name.removeprefix(prefix) for _id, name in inserted],
            many.rowcount,
            one.rowcount,
            [(name.removeprefix(prefix), n) for name, n in rows],
            scalar,
        )
    assert results[True] == results[False]
    assert results[True] == (
        ["-0", "-1", "-2"],
        3,
        3,
        [("-0", 11), ("-1", 12), ("-2", 13)],
        36,
    )


async def test_an_inline_transaction_rolls_back_whole_and_by_savepoint(
    db: Database,
) -> None:
    with pytest.raises(RuntimeError):
        async with db.write(inline=True) as conn:
            await conn.execute(things.insert(), {"name": "gone", "n": 1})
            raise RuntimeError("undo")
    async with db.write(inline=True) as conn:
        await conn.execute(things.insert(), {"name": "kept", "n": 1})
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await conn.execute(things.insert(), {"name": "undone", "n": 2})
                await conn.execute(things.insert(), {"name": "kept", "n": 3})  # unique
        await conn.execute(things.insert(), {"name": "after", "n": 4})
    # Committed and durable: another connection (another process could be) sees it.
    path = make_url(db.url).database
    assert path is not None
    with sqlite3.connect(path) as other:
        names = [r[0] for r in other.execute("SELECT name FROM things ORDER BY n")]
    assert names == ["kept", "after"]


async def test_begin_waits_for_another_process_in_the_thread_not_on_the_loop(
    db: Database,
) -> None:
    """A CLI command holding SQLite's write lock delays an inline transaction's BEGIN, but the
    event loop keeps running meanwhile (it would stop dead if BEGIN ran on it)."""
    path = make_url(db.url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO things (name, n) VALUES ('first', 1)")
        beats: list[float] = []
        done = asyncio.Event()

        async def heartbeat() -> None:
            while not done.is_set():
                beats.append(time.monotonic())
                await asyncio.sleep(0.01)

        async def write() -> None:
            async with db.write(inline=True) as conn:
                await conn.execute(things.insert(), {"name": "second", "n": 2})
            done.set()

        beating = asyncio.create_task(heartbeat())
        writing = asyncio.create_task(write())
        await asyncio.sleep(HOLD)
        assert not writing.done()  # waiting for the other connection's lock
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 30)
        await beating
        held = [b for b in beats if b - beats[0] < HOLD]
        # The loop ran all along: beats every ~10 ms, not one gap of the lock's length.
        assert len(held) > 10
        assert max(b - a for a, b in itertools.pairwise(beats)) < HOLD * 0.7
        async with db.read() as conn:
            names = (await conn.execute(select(things.c.name).order_by(things.c.n))).scalars()
            assert list(names) == ["first", "second"]
    finally:
        other.close()
