"""accounts: failed-login budgets in the database, and a token version per user

- ``login_throttle``: the per-address budget of failed logins, one token bucket per row, so
  that every process of a node spends one budget (node.accounts.ratelimit.LoginThrottle).
- ``users.token_version``: staff tokens carry it; logging out bumps it, which revokes every
  token of that user at once on every process.

The staff token secret leaves ``node_secrets`` too, but not here: a migration does not know the
node directory. The node moves the row into ``DIR/secrets/staff-token.key`` at its start and
deletes it (node.accounts.service.ensure_token_secret).

Revision ID: 0012_accounts_security
Revises: 0011_upload_claims, 0003_accounts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_accounts_security"
# After the accounts branch (0003) and the cases chain (0011): users must exist.
down_revision: str | Sequence[str] | None = ("0011_upload_claims", "0003_accounts")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_index("ix_login_throttle_updated", "login_throttle", ["updated"])
    # Plain ADD COLUMN (no batch copy on SQLite).
    op.add_column(
        "users",
        sa.Column("token_version", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("users", "token_version")
    op.drop_index("ix_login_throttle_updated", table_name="login_throttle")
    op.drop_table("login_throttle")
