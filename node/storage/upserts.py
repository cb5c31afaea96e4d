"""``INSERT … ON CONFLICT`` for either database: SQLAlchemy has it per dialect
(``sqlalchemy.dialects.postgresql.insert``, ``sqlalchemy.dialects.sqlite.insert``), with the
same ``on_conflict_do_nothing`` / ``on_conflict_do_update`` and ``excluded``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def conflict_insert(dialect: str) -> Any:
    """The ``insert`` construct of ``dialect`` (``conn.dialect.name``): PostgreSQL's, or
    SQLite's for any other (the node runs on those two)."""
    return pg_insert if dialect == "postgresql" else sqlite_insert
