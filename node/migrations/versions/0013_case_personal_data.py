"""applicants' ID numbers and phones sealed at rest

- ``cases.applicant_id_masked`` / ``applicant_phone_masked``: the masked copies lists and pages
  show, filled here from the values in clear.
- ``cases.applicant_id_number`` / ``applicant_phone`` are widened (PostgreSQL; SQLite keeps
  any length) to hold sealed values (node/storage/sealing.py). Values in clear stay until
  ``tongban keys reseal`` seals them (a migration has no access to the node's data keys).

Revision ID: 0013_case_personal_data
Revises: 0012_accounts_security
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_case_personal_data"
down_revision: str | Sequence[str] | None = "0012_accounts_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _mask_id(value: str) -> str:
    if len(value) <= 8:
        return value[:1] + "*" * max(0, len(value) - 2) + value[-1:]
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def _mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:] if len(value) >= 7 else "****"


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy on SQLite: that would lose the expression indexes).
    op.add_column("cases", sa.Column("applicant_id_masked", sa.String(40), nullable=True))
    op.add_column("cases", sa.Column("applicant_phone_masked", sa.String(20), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.alter_column("cases", "applicant_id_number", type_=sa.String(200))
        op.alter_column("cases", "applicant_phone", type_=sa.String(200))
    cases = sa.table(
        "cases",
        sa.column("id", sa.Integer),
        sa.column("applicant_id_number", sa.String),
        sa.column("applicant_phone", sa.String),
        sa.column("applicant_id_masked", sa.String),
        sa.column("applicant_phone_masked", sa.String),
    )
    rows = bind.execute(
        sa.select(cases.c.id, cases.c.applicant_id_number, cases.c.applicant_phone)
    ).all()
    for row in rows:
        bind.execute(
            cases.update()
            .where(cases.c.id == row.id)
            .values(
                applicant_id_masked=_mask_id(row.applicant_id_number),
                applicant_phone_masked=_mask_phone(row.applicant_phone),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("applicant_phone_masked")
        batch.drop_column("applicant_id_masked")
