"""A fresh database per node: a SQLite file by default, or a new PostgreSQL database when
TONGBAN_TEST_DATABASE_URL names a server (CI sets it).

A node's database may start at the newest schema (``new_url(..., migrated=True)``): it is then a
copy of one template this test process migrated once with the real migrations (a file copy on
SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL). Migrating each node's database from
nothing cost about 2 s on PostgreSQL (create, 18 migrations, drop) against 0.5 s for a copy,
and the suite starts some thousand nodes. The migrations themselves are still run from an
empty database by every test that asks for one (the default), e.g. tests/test_database.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from node.storage.database import Database
from node.storage.migrate import upgrade

ENV = "TONGBAN_TEST_DATABASE_URL"


def using_postgres() -> bool:
    return bool(os.environ.get(ENV))


async def pg_connect(url: str, *, timeout: float = 60) -> Any:
    """An asyncpg connection to the server and database that the SQLAlchemy ``url`` names
    (unnamed parts: 127.0.0.1, 5432, user and database ``postgres``)."""
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=parsed.database or "postgres",
        timeout=timeout,
    )


#: The migrated template of this process, by database kind: a SQLite file path or a
#: PostgreSQL database name (made at the first request, dropped by drop_templates).
_templates: dict[str, str] = {}


async def _template() -> str:
    """The migrated template of this process (made now if it is not yet)."""
    base = os.environ.get(ENV)
    kind = base or "sqlite"
    made = _templates.get(kind)
    if made is not None:
        return made
    if not base:
        path = Path(tempfile.gettempdir()) / f"tongban-template-{os.getpid()}.db"
        path.unlink(missing_ok=True)
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade(db)
        finally:
            await db.dispose()  # the last connection closes: the WAL is folded into the file
        _templates[kind] = str(path)
        return str(path)
    name = f"tb_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    db = Database(make_url(base).set(database=name).render_as_string(hide_password=False))
    try:
        await upgrade(db)
    finally:
        await db.dispose()  # a template must have no connections when it is copied
    _templates[kind] = name
    return name


async def drop_templates() -> None:
    """Remove this process's templates (the end of the session)."""
    for kind, made in list(_templates.items()):
        with contextlib.suppress(Exception):
            if kind == "sqlite":
                Path(made).unlink(missing_ok=True)
            else:
                await _pg_admin(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')
        del _templates[kind]


async def _pg_admin(sql: str) -> None:
    conn = await pg_connect(os.environ[ENV], timeout=30)
    try:
        # Bounded: a statement stuck on a lock fails the cleanup instead of the whole run.
        await conn.execute(sql, timeout=60)
    finally:
        await conn.close()


class DatabaseFactory:
    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._created: list[str] = []

    async def new_url(self, label: str, *, migrated: bool = False) -> str:
        """A URL of a database for one node: empty, or with ``migrated`` at the newest schema
        (a copy of this process's template)."""
        base = os.environ.get(ENV)
        template = await _template() if migrated else None
        if not base:
            path = self._tmp / f"{label}-{uuid.uuid4().hex[:6]}.db"
            if template is not None:
                shutil.copyfile(template, path)
            return f"sqlite+aiosqlite:///{path}"
        name = f"tb_{label}_{uuid.uuid4().hex[:10]}"
        copy = f' TEMPLATE "{template}"' if template is not None else ""
        await _pg_admin(f'CREATE DATABASE "{name}"{copy}')
        self._created.append(name)
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        for name in self._created:
            with contextlib.suppress(Exception):
                await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()
