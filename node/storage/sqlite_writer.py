"""SQLite's writer connection, able to run a transaction's statements on the event loop.

aiosqlite runs every call of a connection in that connection's own thread: making a cursor,
executing, fetching and closing are each a hand-over to the thread and back (about four per
statement). For a transaction of many small statements the hand-overs cost more than the
statements: the applier, at a few hundred messages a second, spent most of its time in them.

A statement that runs inside a write transaction already begun with ``BEGIN IMMEDIATE`` never
waits for a lock (the transaction holds SQLite's one write lock, and in WAL mode readers never
block a writer), so it can run on the event loop's thread without blocking it on anything but
its own work, which is short (a few rows through indexes). What may wait stays in the thread:
``BEGIN IMMEDIATE`` (it waits up to ``busy_timeout`` for another process, e.g. a CLI command),
and ``COMMIT`` (the fsync that makes the transaction durable, and WAL checkpoints).

``InlineableConnection.inline`` switches a connection between the two ways; the database
handle turns it on for a transaction that asks for it (``Database.write(inline=True)``) once
``BEGIN IMMEDIATE`` has returned, and off again before ``COMMIT``. Only one coroutine uses the
connection at a time (the writer pool holds one connection), and aiosqlite's thread is idle
while the loop runs statements (every call to it is awaited), so the plain ``sqlite3``
connection is never used from two threads at once (SQLAlchemy opens file databases with
``check_same_thread=False``).

Built on SQLAlchemy's aiosqlite adapter classes (SQLAlchemy 2.1); tests/test_sqlite_writer.py
checks the behaviour this relies on.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util.concurrency import await_


async def _done() -> None:
    return None


class InlineCursor:
    """A DBAPI cursor over the plain ``sqlite3`` connection, on the calling thread.

    Rows are fetched at ``execute`` (as the aiosqlite adapter does): a result read after the
    transaction moved on sees what the statement returned, not a half-stepped statement."""

    arraysize = 1

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._cursor = raw.cursor()
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    def execute(self, operation: str, parameters: Sequence[Any] | None = None) -> None:
        cursor = self._cursor
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        self._settle()

    def executemany(self, operation: str, seq_of_parameters: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(operation, seq_of_parameters)
        self._settle()

    def _settle(self) -> None:
        # AsyncConnection.execute insists that the driver awaited something (it takes a
        # statement that did not for a sync driver by mistake, and raises AwaitRequired after
        # it ran): hand it a coroutine that is done at once (no hand-over, no loop turn).
        await_(_done())
        cursor = self._cursor
        self.description = cursor.description
        self._rows = deque(cursor.fetchall()) if cursor.description else deque()
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid

    async def _async_soft_close(self) -> None:
        """What SQLAlchemy's asyncio results call on a cursor before handing it back; the
        rows are in hand already."""

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()

    def setinputsizes(self, *sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass


class InlineableConnection(AsyncAdapt_aiosqlite_connection):
    """The aiosqlite adapter with a switch: ``inline`` runs cursors on the calling thread."""

    __slots__ = ("inline",)

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)
        self.inline = False

    @property
    def raw(self) -> sqlite3.Connection:
        """The plain ``sqlite3`` connection aiosqlite drives (made in its thread)."""
        return self._connection._conn  # type: ignore[attr-defined,no-any-return]

    def cursor(self, server_side: bool = False) -> Any:
        if self.inline and not server_side:
            return InlineCursor(self.raw)
        return super().cursor(server_side)

    def begin_immediate(self) -> None:
        """``BEGIN IMMEDIATE`` in the connection's thread, in one hand-over (it may wait for
        another process's lock); called from the engine's ``begin`` event."""
        try:
            await_(self._connection._execute(self.raw.execute, "BEGIN IMMEDIATE"))  # type: ignore[attr-defined]
        except Exception as error:
            self._handle_exception(error)


def inline_sqlite(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn`` if its transaction runs inline now (what
    ``Savepoints`` and ``Prepared`` send their statements to directly)."""
    adapted = conn.sync_connection.connection.dbapi_connection if conn.sync_connection else None
    if isinstance(adapted, InlineableConnection) and adapted.inline:
        return adapted.raw
    return None


class InlineableDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module of the writer engine (``create_async_engine(..., module=...)``):
    SQLAlchemy's aiosqlite module, making ``InlineableConnection`` instead."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> InlineableConnection:
        connection = aiosqlite.connect(*arg, **kw)
        # Not a thread that keeps the process alive at exit (as SQLAlchemy's own module);
        # aiosqlite 0.22 (pyproject) holds its thread in _thread.
        connection._thread.daemon = True
        return InlineableConnection(self, await_(connection))
