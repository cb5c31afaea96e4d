"""Savepoints for parts of a transaction that must each be undone alone.

SQLAlchemy's ``Connection.begin_nested()`` builds and compiles its ``SAVEPOINT`` and
``ROLLBACK TO SAVEPOINT`` statements anew on every call (each carries a fresh name and is not
cached), and every statement through ``AsyncConnection.execute`` costs tens of
microseconds of SQLAlchemy's own work: for the applier, which makes one per message, the
savepoints were about a sixth of an answered message's applying (bench/README.md).

``Savepoints.of(conn)`` looks once per transaction at how ``conn`` runs its statements: a SQLite
transaction running inline (node/storage/sqlite_writer.py: on the event loop's thread, with
the write lock held) gets its savepoint statements straight from the ``sqlite3`` connection;
any other gets them through SQLAlchemy, built once and taken from its compiled cache. The
name is fixed, so they do not nest (the applier's never do: the handler runs inside one,
``on_refused`` outside it).

Same semantics either way: if the body raises, its changes are undone and the savepoint
released, so the transaction goes on as it was before the body, and the exception
propagates (``SavepointLost`` if the undo failed: the transaction must go); otherwise the
savepoint is released and the body's changes stay in the transaction (they commit or roll
back with it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from node.storage.sqlite_writer import inline_sqlite

BEGIN = "SAVEPOINT tongban_part"
UNDO = "ROLLBACK TO SAVEPOINT tongban_part"
RELEASE = "RELEASE SAVEPOINT tongban_part"
_STATEMENTS = {sql: text(sql) for sql in (BEGIN, UNDO, RELEASE)}


class Savepoints:
    """The savepoints of one transaction (``conn`` from ``Database.write``)."""

    def __init__(self, conn: AsyncConnection, raw: sqlite3.Connection | None) -> None:
        self._conn = conn
        self._raw = raw

    @classmethod
    async def of(cls, conn: AsyncConnection) -> Savepoints:
        """For ``conn`` as it runs now: call it inside the transaction, after it began."""
        return cls(conn, inline_sqlite(conn))

    @property
    def direct(self) -> bool:
        """Whether the savepoints go straight to the ``sqlite3`` connection."""
        return self._raw is not None

    async def _run(self, sql: str) -> None:
        if self._raw is not None:
            self._raw.execute(sql)
        else:
            await self._conn.execute(_STATEMENTS[sql])

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Run the body in a savepoint; undo what it did if it raises.

        The body's exception propagates as it is, a cancellation included. If the undo itself
        fails (the connection was lost or invalidated, the database ended the transaction),
        the transaction is unusable: an ``Exception`` from the body then becomes
        ``SavepointLost`` (the caller must give the transaction up), while a cancellation or
        another ``BaseException`` propagates unchanged."""
        await self._run(BEGIN)
        try:
            yield
        except BaseException as exc:
            failure = await self._undo()
            if failure is not None and isinstance(exc, Exception):
                raise SavepointLost(f"could not undo a savepoint: {failure}") from failure
            raise
        await self._run(RELEASE)

    async def _undo(self) -> BaseException | None:
        """Roll back to the savepoint and release it; the failure, if it failed."""
        if self._conn.invalidated:
            return ConnectionError("the connection was invalidated")
        try:
            await self._run(UNDO)
            await self._run(RELEASE)
        except Exception as failure:
            return failure
        return None


class SavepointLost(Exception):
    """A savepoint could not be undone after its body failed: the transaction must go."""
