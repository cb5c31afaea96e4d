"""The migrations make the tables the code declares: Alembic's comparison of a freshly
migrated database with every area's table definitions finds no difference, on SQLite and on
PostgreSQL, beyond the objects listed here with the reason each is made by SQL of its own."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index, Table
from sqlalchemy.engine import Connection

from node.migrations.tables import metadata
from node.storage.database import Database
from node.storage.migrate import upgrade
from tests.support.databases import DatabaseFactory

#: SQLite's reflection cannot read expression indexes (the cases' due-date orderings):
#: Alembic skips them there with a warning; PostgreSQL compares them.
pytestmark = [
    pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression"),
    pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based"),
]

#: Tables the migrations make with SQL of their own, by dialect: the catalogue search
#: (migration 0018: SQLite's FTS5 tables of the searched text and of its grams, each with its
#: shadow tables).
RAW_TABLES = {
    "sqlite": {
        "catalog_search",
        "catalog_search_config",
        "catalog_search_content",
        "catalog_search_data",
        "catalog_search_docsize",
        "catalog_search_idx",
        "catalog_grams",
        "catalog_grams_config",
        "catalog_grams_data",
        "catalog_grams_docsize",
        "catalog_grams_idx",
    },
    "postgresql": set(),
}
#: Indexes the migrations make with SQL of their own (0018: a C-collated name index, and on
#: PostgreSQL the trigram, grams and code-pattern indexes of the catalogue search).
RAW_INDEXES = {
    "sqlite": {"ix_catalog_entries_name"},
    "postgresql": {
        "ix_catalog_entries_name",
        "ix_catalog_entries_trgm",
        "ix_catalog_entries_grams",
        "ix_catalog_entries_code_pattern",
    },
}
#: Columns whose declared type SQLite keeps from before a widening it does not need (its
#: columns take any length): 0013 widened them on PostgreSQL only.
SQLITE_KEEPS_TYPE = {("cases", "applicant_id_number"), ("cases", "applicant_phone")}


def _differences(sync: Connection) -> list[Any]:
    dialect = sync.dialect.name

    def include(obj: Any, name: str | None, type_: str, reflected: bool, _other: Any) -> bool:
        if type_ == "table" and reflected and name in RAW_TABLES[dialect] | {"alembic_version"}:
            return False
        if type_ == "index" and name in RAW_INDEXES[dialect]:
            return False
        if type_ == "index" and isinstance(obj, Index) and not reflected:
            # Declared for one dialect only (``ddl_if``): compared on that one.
            only = getattr(obj, "_ddl_if", None)
            if only is not None and only.dialect not in (None, dialect):
                return False
        return True

    context = MigrationContext.configure(
        sync, opts={"compare_type": True, "include_object": include}
    )
    found = []
    for difference in compare_metadata(context, metadata):
        changes = difference if isinstance(difference, list) else [difference]
        for change in changes:
            if (
                dialect == "sqlite"
                and change[0] == "modify_type"
                and (change[2], change[3]) in SQLITE_KEEPS_TYPE
            ):
                continue
            found.append(change)
    return found


async def test_a_migrated_database_has_the_declared_tables(databases: DatabaseFactory) -> None:
    db = Database(await databases.new_url("schema"))
    try:
        await upgrade(db)
        async with db.read() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await db.dispose()
    assert [_describe(d) for d in differences] == []
    # Every area's tables were compared.
    assert {"cases", "outbox", "inspection_sessions", "video_calls"} <= set(metadata.tables)
    assert all(isinstance(t, Table) for t in metadata.tables.values())


def _describe(change: Any) -> str:
    kind = change[0]
    if kind in ("add_table", "remove_table"):
        return f"{kind} {change[1].name}"
    if kind in ("add_index", "remove_index"):
        return f"{kind} {change[1].name} on {change[1].table.name}"
    if kind in ("add_column", "remove_column"):
        return f"{kind} {change[2]}.{change[3].name}"
    if kind.startswith("modify_"):
        return f"{kind} {change[2]}.{change[3]}: {change[-2]!r} -> {change[-1]!r}"
    return repr(change)
