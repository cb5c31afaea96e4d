"""case inbox indexes: the overdue-first order and prefix search served from indexes

Revision ID: 0006_case_inbox_indexes
Revises: 0005_cases
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_case_inbox_indexes"
down_revision: str | None = "0005_cases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = [sa.text("(deadline IS NULL)"), sa.text("deadline"), sa.text("received_at DESC")]
OLD = {
    "ix_cases_deadline": ["deadline"],
    "ix_cases_status_deadline": ["status", "deadline"],
    "ix_cases_partner_status": ["partner_region", "status"],
    "ix_cases_warning_from": ["warning_from"],
    "ix_cases_applicant_name": ["applicant_name"],
}


def upgrade() -> None:
    for name in OLD:
        op.drop_index(name, table_name="cases")
    op.create_index("ix_cases_due", "cases", DUE)
    op.create_index(
        "ix_cases_status_due",
        "cases",
        [sa.text("status"), *DUE, sa.text("warning_from"), sa.text("partner_region")],
    )
    op.create_index(
        "ix_cases_partner_status_due", "cases", [sa.text("partner_region"), sa.text("status"), *DUE]
    )
    if op.get_bind().dialect.name == "sqlite":
        for column in ("case_no", "applicant_name"):
            op.create_index(
                f"ix_cases_{column}_nocase",
                "cases",
                [sa.text(f"{column} COLLATE NOCASE"), sa.text("deadline"), sa.text("received_at")],
            )
    else:
        for column in ("case_no", "applicant_name"):
            op.create_index(
                f"ix_cases_{column}_pattern",
                "cases",
                [column],
                postgresql_ops={column: "varchar_pattern_ops"},
                postgresql_include=["deadline", "received_at"],
            )


def downgrade() -> None:
    names = ["ix_cases_due", "ix_cases_status_due", "ix_cases_partner_status_due"]
    if op.get_bind().dialect.name == "sqlite":
        names += ["ix_cases_case_no_nocase", "ix_cases_applicant_name_nocase"]
    else:
        names += ["ix_cases_case_no_pattern", "ix_cases_applicant_name_pattern"]
    for name in names:
        op.drop_index(name, table_name="cases")
    for name, columns in OLD.items():
        op.create_index(name, "cases", columns)
