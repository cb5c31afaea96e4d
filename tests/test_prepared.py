"""Prepared statements (node/storage/prepared.py): the same rows and the same stored values as
through SQLAlchemy, on SQLite and PostgreSQL, inline or not; on an inline SQLite transaction
without SQLAlchemy executing anything; statements it could not run the same are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from node.storage.database import Database
from node.storage.prepared import Prepared
from node.storage.sqlite_writer import inline_sqlite
from node.storage.upserts import conflict_insert
from tests.support.databases import DatabaseFactory, using_postgres

metadata = MetaData()
things = Table(
    "prepared_things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False, unique=True),
    Column("weight", Float, nullable=False),
    Column("count", Integer, nullable=False, default=0),
    Column("seen", DateTime),
    Column("done", Boolean, nullable=False, default=False),
)

INSERT = Prepared(
    things.insert().returning(things.c.id), ("name", "weight", "count", "seen", "done")
)
BY_NAME = Prepared(select(things).where(things.c.name == bindparam("name")), ("name",))
#: One more of ``name``: a fixed value (2) in the statement beside the parameters.
BUMP = {
    dialect: Prepared(
        conflict_insert(dialect)(things)
        .values(name=bindparam("name"), weight=bindparam("weight"), count=2, done=False)
        .on_conflict_do_update(index_elements=[things.c.name], set_={"count": things.c.count + 1})
        .returning(things.c.count),
        ("name", "weight"),
    )
    for dialect in ("sqlite", "postgresql")
}


@pytest.fixture
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await databases.new_url("prepared"))
    async with database.write() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


def _executions(conn: AsyncConnection) -> list[str]:
    """Statements SQLAlchemy executes on ``conn`` from now on (in this transaction)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(conn.sync_connection, "before_cursor_execute", record)
    return seen


@pytest.mark.parametrize("inline", [False, True])
async def test_rows_and_values_as_through_sqlalchemy(db: Database, inline: bool) -> None:
    direct = inline and not using_postgres()
    async with db.write(inline=inline) as conn:
        assert (inline_sqlite(conn) is not None) is direct
        executed = _executions(conn)
        first = await INSERT.scalar(conn, _thing("a", weight=3, count=1))
        second = await INSERT.scalar(conn, _thing("b", weight=2.5, count=4, done=True))
        bump = BUMP[conn.dialect.name]
        assert [await bump.scalar(conn, {"name": n, "weight": 1}) for n in "aac"] == [2, 3, 2]
        # Inline on SQLite, nothing went through SQLAlchemy.
        assert (executed == []) is direct
    assert second == first + 1
    async with db.read() as conn:
        rows = (await conn.execute(select(things).order_by(things.c.name))).all()
    assert [(r.name, r.weight, r.count) for r in rows] == [
        ("a", 3.0, 3),
        ("b", 2.5, 4),
        ("c", 1.0, 2),
    ]
    # The Float's bind processing happened: a float stored, not the int given.
    assert all(isinstance(r.weight, float) for r in rows)


def _thing(name: str, **values: Any) -> dict[str, Any]:
    return {"name": name, "weight": 1.0, "count": 0, "seen": None, "done": False, **values}


@pytest.mark.parametrize("inline", [False, True])
async def test_named_rows_with_values_as_sqlalchemy_reads_them(db: Database, inline: bool) -> None:
    """A row read by a prepared statement has the columns' names and the values (types
    included: a DateTime, a bool) that SQLAlchemy's own row has; none found is None."""
    seen = datetime(2026, 12, 4, 21, 30, 5, 123456)
    async with db.write() as conn:
        await conn.execute(things.insert(), [_thing("x", seen=seen, done=True), _thing("y")])
    async with db.write(inline=inline) as conn:
        expected = (await conn.execute(select(things).where(things.c.name == "x"))).one()
        row = await BY_NAME.first(conn, {"name": "x"})
        other = await BY_NAME.first(conn, {"name": "y"})
        assert await BY_NAME.first(conn, {"name": "nobody"}) is None
    assert row._fields == tuple(expected._fields)
    assert tuple(row) == tuple(expected)
    assert (row.seen, row.done, other.done, other.seen) == (seen, True, False, None)
    assert [type(v) for v in row] == [type(v) for v in expected]


@pytest.mark.parametrize("inline", [False, True])
async def test_in_the_transaction(db: Database, inline: bool) -> None:
    """A prepared statement's change is part of the transaction: it rolls back with it."""
    with pytest.raises(RuntimeError):
        async with db.write(inline=inline) as conn:
            await INSERT.rows(conn, _thing("gone"))
            await conn.execute(update(things).values(count=7))
            raise RuntimeError
    async with db.read() as conn:
        assert (await conn.execute(select(things))).all() == []


@pytest.mark.parametrize(
    ("statement", "keys", "why"),
    [
        # count's default is computed by SQLAlchemy when the statement does not name it.
        (things.insert(), ("name", "weight"), "default"),
        # a key the statement does not take (a misspelt name).
        (things.insert(), ("name", "weight", "count", "done", "colour"), "parameters"),
        # a parameter nobody gives.
        (update(things).values(count=bindparam("n")), ("name",), "parameters"),
    ],
)
async def test_what_it_cannot_run_the_same_is_refused(
    db: Database, statement: Any, keys: tuple[str, ...], why: str
) -> None:
    if using_postgres():
        pytest.skip("compiled only for SQLite's inline transactions")
    prepared = Prepared(statement, keys)
    async with db.write(inline=True) as conn:
        with pytest.raises(ValueError, match=why):
            await prepared.rows(conn, dict.fromkeys(keys, 1))
