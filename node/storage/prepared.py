"""Statements run for every message: compiled once, and run without SQLAlchemy's own
per-execution work where that changes nothing.

Through ``AsyncConnection.execute`` a statement costs about 40 µs of SQLAlchemy's work on a
fast day here (a greenlet, its cache key, an execution context, parameter processing, a
result), several times what SQLite takes to run it. ``Prepared`` compiles its statement once
per dialect. In a SQLite transaction that runs inline (node/storage/sqlite_writer.py: on the
event loop's thread, the write lock held) it hands the SQL and the parameters, in compiled
order, straight to the ``sqlite3`` connection, as ``Savepoints`` does for its statements; in
any other transaction it runs through SQLAlchemy like any statement.

Both ways give the same. Parameters go through the column types' bind processing and
results through their result processing as SQLAlchemy's would (``Float`` makes a float and
``Boolean`` a bool on SQLite, say), and rows come back as one kind of named tuple either way
(``row.status``, ``row[0]``; SQLAlchemy's ``Row`` extras such as ``_mapping`` are not
there). It refuses, when first compiled, what it could not do the same: a column default
computed in Python, a parameter not named in ``keys`` nor bound to a value in the statement.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable

from node.storage.sqlite_writer import inline_sqlite

Process = Callable[[Any], Any]


class Prepared:
    """``statement`` executed with a dict of the parameters named ``keys``."""

    def __init__(self, statement: Executable, keys: Sequence[str]) -> None:
        self._statement = statement
        self._keys = tuple(keys)
        self._sqlite: _Compiled | None = None
        self._row: Any = None  # the named tuple of this statement's rows, once seen

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[Any]:
        """Run with ``params`` (exactly ``keys``) in ``conn``'s transaction; the rows it
        returns, as named tuples (none for a statement that returns none)."""
        raw = inline_sqlite(conn)
        if raw is None:
            result = await conn.execute(self._statement, dict(params))
            if not result.returns_rows:
                return []
            make = self._row_type(tuple(result.keys()))
            return [make(*row) for row in result.all()]
        compiled = self._sqlite
        if compiled is None:
            compiled = self._sqlite = _Compiled.of(self._statement, self._keys, conn.dialect)
        found = raw.execute(compiled.sql, compiled.values(params)).fetchall()
        if not compiled.columns:
            return []
        make = self._row_type(compiled.columns)
        return [make(*compiled.processed(row)) for row in found]

    async def first(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        found = await self.rows(conn, params)
        return found[0] if found else None

    async def scalar(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        """The one value of the one row the statement returns."""
        [(value,)] = await self.rows(conn, params)
        return value

    def _row_type(self, columns: tuple[str, ...]) -> Any:
        if self._row is None or self._row._fields != columns:
            self._row = namedtuple("PreparedRow", columns)  # type: ignore[misc]
        return self._row


class _Compiled:
    def __init__(
        self,
        sql: str,
        order: tuple[str, ...],
        fixed: dict[str, Any],
        processors: Mapping[str, Process],
        columns: tuple[str, ...],
        results: tuple[Process | None, ...],
    ) -> None:
        self.sql = sql
        self.columns = columns
        self._fixed = fixed
        self._steps = tuple((name, processors.get(name)) for name in order)
        self._results = results if any(results) else None

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, process in self._steps:
            value = params[name] if name in params else self._fixed[name]
            out.append(value if process is None or value is None else process(value))
        return out

    def processed(self, row: tuple[Any, ...]) -> tuple[Any, ...] | list[Any]:
        if self._results is None:
            return row
        return [
            value if process is None or value is None else process(value)
            for value, process in zip(row, self._results, strict=True)
        ]

    @classmethod
    def of(cls, statement: Executable, keys: tuple[str, ...], dialect: Dialect) -> _Compiled:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler)
        name = type(statement).__name__
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError(f"{name}: a column default is computed in Python by SQLAlchemy")
        order = tuple(compiled.positiontup or ())
        bound = compiled.construct_params(_check=False)
        fixed = {n: bound[n] for n in order if n not in keys}
        if any(value is None for value in fixed.values()) or set(keys) - set(order):
            raise ValueError(f"{name}: parameters {order} are not those given, {keys}")
        columns = tuple(c.keyname for c in compiled._result_columns)
        results = tuple(
            c.type._cached_result_processor(dialect, None) for c in compiled._result_columns
        )
        return cls(compiled.string, order, fixed, dict(compiled._bind_processors), columns, results)
