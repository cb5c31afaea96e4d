"""case follow-ups: stored warning lead, 容缺 catch-up deadline, maintained status counts

- ``cases.warning_days``: the warning lead (working days) fixed at 受理, so both nodes compute
  normal / warning / overdue the same way and a later catalogue change moves nothing.
- ``cases.deferred_until`` / ``cases.deferred_warning_from``: the 容缺 catch-up deadline while
  deferred materials are outstanding (NULL once all are caught up).
- ``case_status_counts``: cases per (partner region, status), kept by every status change, so
  supervision never counts the whole table; ``case_due_counts``: clocked cases per (partner
  region, deadline, warning date), for the time-status counts. Both filled here.

Revision ID: 0007_case_followups
Revises: 0006_case_inbox_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_case_followups"
down_revision: str | None = "0006_case_inbox_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("warning_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("deferred_until", sa.String(10), nullable=True))
        batch.add_column(sa.Column("deferred_warning_from", sa.String(10), nullable=True))
    op.create_index(
        "ix_cases_deferred", "cases", ["deferred_until", "deferred_warning_from", "status"]
    )
    op.create_table(
        "case_status_counts",
        sa.Column("partner_region", sa.String(6), primary_key=True),
        sa.Column("status", sa.String(24), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO case_status_counts (partner_region, status, count) "
        "SELECT partner_region, status, COUNT(*) FROM cases GROUP BY partner_region, status"
    )
    op.create_table(
        "case_due_counts",
        sa.Column("partner_region", sa.String(6), primary_key=True),
        sa.Column("deadline", sa.String(10), primary_key=True),
        sa.Column("warning_from", sa.String(10), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO case_due_counts (partner_region, deadline, warning_from, count) "
        "SELECT partner_region, deadline, COALESCE(warning_from, ''), COUNT(*) FROM cases "
        "WHERE status IN ('accepted', 'supplement_pending', 'inspection') "
        "AND deadline IS NOT NULL "
        "GROUP BY partner_region, deadline, COALESCE(warning_from, '')"
    )


def downgrade() -> None:
    op.drop_table("case_due_counts")
    op.drop_table("case_status_counts")
    op.drop_index("ix_cases_deferred", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("deferred_warning_from")
        batch.drop_column("deferred_until")
        batch.drop_column("warning_days")
