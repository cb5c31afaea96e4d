"""the replica holding a live inspection session (inspection/holding.py)

Revision ID: 0020_inspection_holders
Revises: 0019_citizen_session_ends
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_inspection_holders"
down_revision: str | Sequence[str] | None = "0019_citizen_session_ends"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inspection_sessions") as batch:
        batch.add_column(sa.Column("holder", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("held_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inspection_sessions") as batch:
        batch.drop_column("held_until")
        batch.drop_column("holder")
