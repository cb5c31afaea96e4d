"""inspections: video sessions, used join tokens, captured evidence

Revision ID: 0008
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0005_cases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inspection_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_id", _ID, nullable=False),
        sa.Column("xt_id", sa.String(length=64), nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("scheduled_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("token_secret", sa.String(length=64), nullable=False),
        sa.Column("checklist", sa.Text(), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("participants", sa.Text(), nullable=False),
        sa.Column("site_address", sa.String(length=300), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("result", sa.String(length=12), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_sessions")),
    )
    op.create_index("ix_inspection_sessions_case_id", "inspection_sessions", ["case_id"])
    op.create_table(
        "inspection_token_uses",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=False),
        sa.Column("resume_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_inspection_token_uses")),
    )
    op.create_table(
        "inspection_items",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("taken_at", sa.Float(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_items")),
    )
    op.create_index("ix_inspection_items_session_id", "inspection_items", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_inspection_items_session_id", table_name="inspection_items")
    op.drop_table("inspection_items")
    op.drop_table("inspection_token_uses")
    op.drop_index("ix_inspection_sessions_case_id", table_name="inspection_sessions")
    op.drop_table("inspection_sessions")
