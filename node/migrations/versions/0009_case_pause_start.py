"""case pause start and recomputable 容缺 / 整改 deadlines

- ``cases.paused_since``: the day the pause in progress began (NULL while the clock runs), so
  the inbox filter and supervision's counts judge a paused case as of that day, like its
  detail does. Filled here from the open pause in ``pauses``.
- ``ix_cases_status_due`` gains ``paused_since`` (the running-clock branch of a time-status
  filter stays index-only); ``ix_cases_paused_due``, partial, serves the paused branch.
- ``case_due_counts`` gains ``paused_since`` ("" while the clock runs) in its key; rebuilt.
- ``cases.deferred_days`` / ``deferred_warning_days`` / ``deferred_provisional`` and ``ratings.rectification_days`` /
  ``rectification_provisional``: the inputs of the 容缺 catch-up deadline and of the 差评
  rectification deadline, and whether they were counted on weekends alone, so a calendar load
  recomputes them like the promised deadlines. Rows from before stay as they are.

Revision ID: 0009_case_pause_start
Revises: 0007_case_followups, 0008
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_case_pause_start"
# After the cases chain (0007) and the newest migration (0008, inspections): one head again.
down_revision: str | Sequence[str] | None = ("0007_case_followups", "0008")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = [sa.text("(deadline IS NULL)"), sa.text("deadline"), sa.text("received_at DESC")]
STATUS_DUE = [sa.text("status"), *DUE, sa.text("warning_from"), sa.text("partner_region")]
CLOCKED = "('accepted', 'supplement_pending', 'inspection')"


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy on SQLite: that would lose the expression indexes).
    op.add_column("cases", sa.Column("paused_since", sa.String(10), nullable=True))
    op.add_column("cases", sa.Column("deferred_days", sa.Integer(), nullable=True))
    op.add_column("cases", sa.Column("deferred_warning_days", sa.Integer(), nullable=True))
    op.add_column(
        "cases",
        sa.Column("deferred_provisional", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("ratings", sa.Column("rectification_days", sa.Integer(), nullable=True))
    op.add_column(
        "ratings",
        sa.Column(
            "rectification_provisional", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )
    bind = op.get_bind()
    cases = sa.table(
        "cases",
        sa.column("id", sa.Integer),
        sa.column("pauses", sa.Text),
        sa.column("paused", sa.Boolean),
        sa.column("paused_since", sa.String),
    )
    paused = bind.execute(
        sa.select(cases.c.id, cases.c.pauses).where(cases.c.paused.is_(True))
    ).all()
    for row_id, pauses in paused:
        start = next((p[0] for p in json.loads(pauses or "[]") if p[1] is None), None)
        if start is not None:
            bind.execute(
                sa.update(cases).where(cases.c.id == row_id).values(paused_since=str(start))
            )
    op.drop_index("ix_cases_status_due", table_name="cases", if_exists=True)
    op.create_index("ix_cases_status_due", "cases", [*STATUS_DUE, sa.text("paused_since")])
    op.create_index(
        "ix_cases_paused_due",
        "cases",
        [sa.text("status"), *DUE, sa.text("paused_since"), sa.text("warning_from")],
        sqlite_where=sa.text("paused_since IS NOT NULL"),
        postgresql_where=sa.text("paused_since IS NOT NULL"),
    )
    op.drop_table("case_due_counts")
    op.create_table(
        "case_due_counts",
        sa.Column("partner_region", sa.String(6), primary_key=True),
        sa.Column("deadline", sa.String(10), primary_key=True),
        sa.Column("warning_from", sa.String(10), primary_key=True),
        sa.Column("paused_since", sa.String(10), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO case_due_counts (partner_region, deadline, warning_from, paused_since, count) "
        "SELECT partner_region, deadline, COALESCE(warning_from, ''), COALESCE(paused_since, ''), "
        f"COUNT(*) FROM cases WHERE status IN {CLOCKED} AND deadline IS NOT NULL "
        "GROUP BY partner_region, deadline, COALESCE(warning_from, ''), COALESCE(paused_since, '')"
    )


def downgrade() -> None:
    op.drop_table("case_due_counts")
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
        f"WHERE status IN {CLOCKED} AND deadline IS NOT NULL "
        "GROUP BY partner_region, deadline, COALESCE(warning_from, '')"
    )
    op.drop_index("ix_cases_paused_due", table_name="cases")
    op.drop_index("ix_cases_status_due", table_name="cases")
    op.create_index("ix_cases_status_due", "cases", STATUS_DUE)
    # Plain DROP COLUMN (SQLite 3.35+), for the same reason as in upgrade.
    op.drop_column("ratings", "rectification_provisional")
    op.drop_column("ratings", "rectification_days")
    for column in (
        "deferred_provisional",
        "deferred_warning_days",
        "deferred_days",
        "paused_since",
    ):
        op.drop_column("cases", column)
