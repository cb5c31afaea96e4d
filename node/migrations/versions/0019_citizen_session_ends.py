"""citizens' page sessions ended by a logout (node/identity/models.py)

Revision ID: 0019_citizen_session_ends
Revises: 0018_catalog_search
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_citizen_session_ends"
down_revision: str | Sequence[str] | None = "0018_catalog_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "citizen_session_ends",
        sa.Column("sid_digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sid_digest", name=op.f("pk_citizen_session_ends")),
    )
    op.create_index("ix_citizen_session_ends_expires_at", "citizen_session_ends", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_citizen_session_ends_expires_at", table_name="citizen_session_ends")
    op.drop_table("citizen_session_ends")
