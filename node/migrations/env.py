"""Alembic environment: runs on the connection node.storage.migrate hands it."""

from alembic import context

# Every area's tables, so autogenerate sees them all.
import node.accounts.models
import node.cases.models
import node.catalog.models
import node.federation.models
import node.identity.models
import node.videocalls.models
import node.workdays.models  # noqa: F401
from node.storage.metadata import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - alembic is always driven through node.storage
    raise RuntimeError("run migrations with `tongban` (node.storage.migrate), not bare alembic")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
