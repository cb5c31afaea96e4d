"""Tables of this area (joined to node.storage.metadata). Times are UNIX seconds (float)."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from node.accounts.staff import ROLES
from node.storage.metadata import metadata

_ID = BigInteger().with_variant(Integer, "sqlite")
_ROLE_CHECK = "role IN (" + ", ".join(f"'{role}'" for role in ROLES) + ")"

#: Staff members of this node's region. Never deleted (the audit log names them): deactivated.
users = Table(
    "users",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    # Lower case, [a-z0-9._-]; unique within the node.
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(100), nullable=False),
    Column("role", String(20), nullable=False),
    # argon2id, PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    Column("password_hash", String(255), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    # Consecutive failed logins since the last success or lock.
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", Float, nullable=True),
    # Also the token generation: tokens carry it, and a change of password voids older tokens.
    Column("password_changed_at", Float, nullable=False),
    # Tokens carry it (claim ``tv``); logging out adds one, which revokes every older token.
    Column("token_version", Integer, nullable=False, default=0, server_default=text("0")),
    CheckConstraint(_ROLE_CHECK, name="role"),
)

#: Secrets the node's processes share through the database (e.g. ``jwt`` the staff token key).
node_secrets = Table(
    "node_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    # Base64 (url-safe, no padding) of the secret bytes.
    Column("value", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

#: Failed-login budgets per client address (a token bucket per row), kept in the database so
#: that every process of the node spends one budget. ``key`` is the SHA-256 of the client key
#: (no addresses stored); rows whose bucket has refilled are deleted as logins come.
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Index("ix_login_throttle_updated", "updated"),
)
