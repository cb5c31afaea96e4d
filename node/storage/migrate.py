"""Bring a database to the newest schema with Alembic, from inside the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from node.storage.database import Database

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: PostgreSQL advisory lock key, so replicas starting together migrate one at a time.
_MIGRATION_LOCK = 7_415_020_301


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def upgrade(db: Database) -> None:
    """Apply every migration not yet applied (a no-op on an up-to-date database)."""

    def run(sync_conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "heads")

    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        await conn.run_sync(run)
