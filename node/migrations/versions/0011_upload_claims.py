"""uploads claimed by a case

- ``uploads.claimed_at``: when a case first used the file. Uploads nobody used within a day
  (an anonymous caller's, an abandoned form's) are removed by the janitor
  (node/ops/janitor.py); ``ix_uploads_unclaimed`` (partial) finds them. Every upload from
  before counts as claimed.

Revision ID: 0011_upload_claims
Revises: 0010_rejection_counts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_upload_claims"
down_revision: str | Sequence[str] | None = "0010_rejection_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("claimed_at", sa.Float(), nullable=True))
    op.execute("UPDATE uploads SET claimed_at = uploaded_at")
    op.create_index(
        "ix_uploads_unclaimed",
        "uploads",
        ["uploaded_at"],
        sqlite_where=sa.text("claimed_at IS NULL"),
        postgresql_where=sa.text("claimed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_uploads_unclaimed", table_name="uploads")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("claimed_at")
