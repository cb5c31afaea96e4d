"""catalog: our items and partners' cached catalogues

Revision ID: 0004_catalog
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_catalog"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("handling_region", sa.String(length=6), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("retired_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_items")),
    )
    op.create_table(
        "partner_catalogs",
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=True),
        sa.Column("fetched_at", sa.Float(), nullable=True),
        sa.Column("attempted_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("region", name=op.f("pk_partner_catalogs")),
    )


def downgrade() -> None:
    op.drop_table("partner_catalogs")
    op.drop_table("items")
