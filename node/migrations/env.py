"""Alembic environment: runs on the connection node.storage.migrate hands it."""

from alembic import context

# Every area's tables, so autogenerate sees them all.
from node.migrations.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - alembic is always driven through node.storage
    raise RuntimeError("run migrations with `tongban` (node.storage.migrate), not bare alembic")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
