"""rejections counted per (hour, source, endpoint, code) instead of a row per request

Refusals come before authentication, so anyone could add rows without bound. The table now
holds one row per hour, source (client address, or the claimed issuer), endpoint and error
code, with a count, first and last time and the latest detail. Existing rows are folded into
those aggregates.

Revision ID: 0010_rejection_counts
Revises: 0009_case_pause_start
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_rejection_counts"
down_revision: str | None = "0009_case_pause_start"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _set_aside(table: str) -> None:
    """Rename ``table`` to ``<table>_old`` with its primary key and, on PostgreSQL, its id
    sequence, so the new table can take their names."""
    op.rename_table(table, f"{table}_old")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table}_old RENAME CONSTRAINT pk_{table} TO pk_{table}_old")
        op.execute(f"ALTER SEQUENCE IF EXISTS {table}_id_seq RENAME TO {table}_old_id_seq")


def upgrade() -> None:
    _set_aside("rejections")
    op.create_table(
        "rejections",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.Float(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("iss", sa.String(length=6), nullable=True),
        sa.Column("jti", sa.String(length=36), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rejections"),
        sa.UniqueConstraint(
            "hour", "source", "endpoint", "code", name="uq_rejections_hour_source_endpoint_code"
        ),
    )
    op.create_index("ix_rejections_last_at", "rejections", ["last_at"])
    if op.get_bind().dialect.name == "postgresql":
        hour = "CAST(floor(at / 3600) AS BIGINT) * 3600"
    else:
        hour = "CAST(at / 3600 AS INTEGER) * 3600"  # truncates; times are positive
    op.execute(
        "INSERT INTO rejections (hour, source, endpoint, code, count, first_at, last_at,"
        " detail, iss, jti, size)"
        " SELECT hour, source, endpoint, code, COUNT(*), MIN(at), MAX(at), MAX(detail),"
        " MAX(iss), MAX(jti), MAX(size) FROM"
        f" (SELECT {hour} AS hour, COALESCE(remote, 'iss:' || iss, '') AS source, endpoint,"
        " code, at, detail, iss, jti, size FROM rejections_old) AS old"
        " GROUP BY hour, source, endpoint, code"
    )
    op.drop_table("rejections_old")


def downgrade() -> None:
    _set_aside("rejections")
    op.create_table(
        "rejections",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("endpoint", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.Column("iss", sa.String(length=6), nullable=True),
        sa.Column("jti", sa.String(length=36), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rejections"),
    )
    # One row per aggregate (the counts cannot be unfolded into the requests they counted).
    op.execute(
        "INSERT INTO rejections (at, endpoint, code, detail, remote, iss, jti, size)"
        " SELECT last_at, endpoint, code, detail,"
        " CASE WHEN source = '' OR source LIKE 'iss:%' THEN NULL ELSE source END,"
        " iss, jti, size FROM rejections_old"
    )
    op.drop_table("rejections_old")
