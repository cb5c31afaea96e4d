"""A fresh database per node: a SQLite file by default, or a new PostgreSQL database when
TONGBAN_TEST_DATABASE_URL names a server (CI sets it)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

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


class DatabaseFactory:
    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._created: list[str] = []

    async def new_url(self, label: str) -> str:
        """A URL of an empty database for one node."""
        base = os.environ.get(ENV)
        if not base:
            return f"sqlite+aiosqlite:///{self._tmp / f'{label}-{uuid.uuid4().hex[:6]}.db'}"
        name = f"tb_{label}_{uuid.uuid4().hex[:10]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    async def _admin(self, sql: str) -> None:
        conn = await pg_connect(os.environ[ENV], timeout=30)
        try:
            # Bounded: a statement stuck on a lock fails the cleanup instead of the whole run.
            await conn.execute(sql, timeout=60)
        finally:
            await conn.close()

    async def drop_all(self) -> None:
        for name in self._created:
            with contextlib.suppress(Exception):
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()
