"""视频办: call requests, callbacks, clerks on duty; the helper role

- ``video_calls``, ``video_callbacks``, ``video_duty`` (docs/videocalls.md);
- ``users.role`` may be ``helper`` (视频帮办): the check constraint is replaced.

Revision ID: 0017_video_calls
Revises: 0013_case_personal_data
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_video_calls"
down_revision: str | Sequence[str] | None = "0013_case_personal_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_ROLES = "role IN ('clerk', 'approver', 'inspector', 'supervisor', 'admin')"
NEW_ROLES = "role IN ('clerk', 'approver', 'inspector', 'supervisor', 'admin', 'helper')"


def upgrade() -> None:
    op.create_table(
        "video_calls",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("picked_at", sa.Float(), nullable=True),
        sa.Column("connected_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("end_reason", sa.String(length=20), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("item_code", sa.String(length=40), nullable=True),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("phone_masked", sa.String(length=20), nullable=True),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("clerk", sa.String(length=64), nullable=True),
        sa.Column("clerk_name", sa.String(length=100), nullable=True),
        sa.Column("rating_level", sa.Integer(), nullable=True),
        sa.Column("rating_comment", sa.Text(), nullable=True),
        sa.Column("rating_channel", sa.String(length=12), nullable=True),
        sa.Column("rated_at", sa.Float(), nullable=True),
        sa.Column("appointment_at", sa.String(length=20), nullable=True),
        sa.Column("appointment_note", sa.String(length=200), nullable=True),
        sa.Column("application_item", sa.String(length=40), nullable=True),
        sa.Column("application_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_calls")),
    )
    op.create_index("ix_video_calls_status_created_at", "video_calls", ["status", "created_at"])
    op.create_index("ix_video_calls_created_at", "video_calls", ["created_at"])
    op.create_table(
        "video_callbacks",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=False),
        sa.Column("phone_masked", sa.String(length=20), nullable=False),
        sa.Column("item_code", sa.String(length=40), nullable=True),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("handled_by", sa.String(length=64), nullable=True),
        sa.Column("handled_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_callbacks")),
    )
    op.create_index(
        "ix_video_callbacks_status_created_at", "video_callbacks", ["status", "created_at"]
    )
    op.create_table(
        "video_duty",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("on_duty", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_video_duty")),
    )
    _roles(NEW_ROLES)


def _roles(new: str) -> None:
    """Replace the check of ``users.role`` (SQLite: batch mode copies the table)."""
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_role"), type_="check")
        batch.create_check_constraint(op.f("ck_users_role"), sa.text(new))


def downgrade() -> None:
    op.execute("UPDATE users SET role = 'clerk', active = false WHERE role = 'helper'")
    _roles(OLD_ROLES)
    op.drop_table("video_duty")
    op.drop_index("ix_video_callbacks_status_created_at", table_name="video_callbacks")
    op.drop_table("video_callbacks")
    op.drop_index("ix_video_calls_created_at", table_name="video_calls")
    op.drop_index("ix_video_calls_status_created_at", table_name="video_calls")
    op.drop_table("video_calls")
