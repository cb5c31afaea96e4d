"""The database handle: one write path and one read path.

SQLite allows one writer at a time. Its writes go through a pool of one connection that opens
every transaction with ``BEGIN IMMEDIATE`` (so a transaction never fails half-way on a lock
upgrade, and other processes wait on ``busy_timeout``); reads use a separate pool in WAL mode
and never block on writers. PostgreSQL uses one pool for both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from node.storage.sqlite_writer import InlineableConnection, InlineableDbapi


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the driver, so BEGIN is ours to emit.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we acknowledge anything (receipts promise that).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # One hand-over to the writer's thread (InlineableConnection), not one per DBAPI call.
    conn.connection.dbapi_connection.begin_immediate()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


T = TypeVar("T")

#: Options of every engine. ``hide_parameters``: a database error's text (logged with the
#: traceback of a failed request) names the SQL but not its parameters, which are applicants'
#: names, ID numbers, phones and query hashes.
ENGINE_OPTIONS: dict[str, Any] = {"hide_parameters": True}

#: Callbacks to run after commit, per open write connection (by id; no I/O to look them up).
_after_commit: dict[int, list[Callable[[], None]]] = {}


def after_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Run ``callback`` after the transaction of ``conn`` (from ``Database.write``) commits."""
    callbacks = _after_commit.get(id(conn))
    if callbacks is None:
        raise RuntimeError("after_commit needs a connection from Database.write()")
    if callback not in callbacks:
        callbacks.append(callback)


@asynccontextmanager
async def _inline(conn: AsyncConnection) -> AsyncIterator[None]:
    adapted = (await conn.get_raw_connection()).dbapi_connection
    assert isinstance(adapted, InlineableConnection)
    adapted.inline = True
    try:
        yield
    finally:
        adapted.inline = False


class Database:
    """Owns the engines. ``write()`` for transactions that change data, ``read()`` for the
    rest."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self._writer = create_async_engine(
                url, pool_size=1, max_overflow=0, module=InlineableDbapi(), **ENGINE_OPTIONS
            )
            self._reader = create_async_engine(url, pool_size=4, max_overflow=4, **ENGINE_OPTIONS)
            for engine in (self._writer, self._reader):
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self._writer.sync_engine, "begin", _sqlite_begin_immediate)
            event.listen(self._reader.sync_engine, "begin", _sqlite_begin)
        else:
            self._writer = create_async_engine(url, pool_size=10, max_overflow=10, **ENGINE_OPTIONS)
            self._reader = self._writer
        #: Transactions waiting for SQLite's one writer connection right now: urgent ones,
        #: and all that are not background work (urgent ones included).
        self._urgent_waiters = 0
        self._waiters = 0

    @property
    def writer_wanted(self) -> bool:
        """SQLite: an urgent transaction (an inbound store: a partner waits for its receipt)
        waits for the one writer connection. Work that can wait (the applier's) gives way,
        and pauses before its next transaction."""
        return self._urgent_waiters > 0

    @property
    def writer_awaited(self) -> bool:
        """SQLite: a transaction that is not background work waits for the one writer
        connection (a clerk's action, an inbound store, ...). The applier, which holds the
        writer for up to ``BUDGET`` while it has a backlog, ends its transaction early."""
        return self._waiters > 0

    @asynccontextmanager
    async def _writer_connection(
        self, urgent: bool, background: bool
    ) -> AsyncIterator[AsyncConnection]:
        if not self.is_sqlite or background:
            async with self._writer.connect() as conn:
                yield conn
            return
        conn = self._writer.connect()
        self._waiters += 1
        self._urgent_waiters += urgent
        try:
            await conn.start()
        finally:
            self._waiters -= 1
            self._urgent_waiters -= urgent
        try:
            yield conn
        finally:
            await conn.close()

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    @asynccontextmanager
    async def write(
        self, *, urgent: bool = False, inline: bool = False, background: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on any exception.

        Callbacks registered with ``after_commit(conn, fn)`` run once the commit succeeded.
        ``urgent``: see ``writer_wanted``. ``background``: work whose wait for the writer
        does not cut the applier's transactions short (``writer_awaited``): the applier's
        own, and the delivery's bookkeeping, which gains from fewer, fuller transactions.
        ``inline`` (SQLite): the transaction's statements run on the event loop's thread,
        not each handed to the connection's thread (node/storage/sqlite_writer.py); for
        transactions of many short statements and nothing slow (the applier's).
        """
        callbacks: list[Callable[[], None]] = []
        async with self._writer_connection(urgent, background) as conn:
            _after_commit[id(conn)] = callbacks
            try:
                async with conn.begin():
                    if inline and self.is_sqlite:
                        async with _inline(conn):
                            yield conn
                    else:
                        yield conn
            finally:
                _after_commit.pop(id(conn), None)
        for callback in callbacks:
            callback()

    async def run_write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        urgent: bool = False,
        background: bool = False,
    ) -> T:
        """SQLite only: run ``fn(connection)`` as one write transaction (``BEGIN IMMEDIATE``
        ... ``COMMIT``, rolled back if it raises) in the writer connection's own thread.

        The whole transaction costs one hand-over to that thread instead of several per
        statement: the hot paths (inbound group commit, outbox claim and record) use it.
        ``fn`` gets the plain ``sqlite3`` connection and must not touch the event loop.
        ``urgent``, ``background``: as for ``write``.
        """
        if not self.is_sqlite:
            raise RuntimeError("run_write is for SQLite; use write() on PostgreSQL")
        async with self._writer_connection(urgent, background) as conn:
            fairy = await conn.get_raw_connection()
            driver = fairy.driver_connection  # the aiosqlite connection
            assert driver is not None
            raw: sqlite3.Connection = driver._conn

            def transaction() -> T:
                raw.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(raw)
                    raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                    raise
                return result

            # aiosqlite runs every call of this connection on its thread, in order; its
            # _execute hands one function over (the same path its own execute() takes).
            return await driver._execute(transaction)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()
