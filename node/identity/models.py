"""Tables of the citizens' identity (joined to node.storage.metadata)."""

from sqlalchemy import Column, Float, Index, String, Table

from node.storage.metadata import metadata

#: Citizens' page sessions ended by a logout before they expired. A session lives in a sealed
#: cookie (node/identity/session.py), which a copy would keep valid until its expiry; its id
#: here ends it for every copy. ``sid_digest`` is the SHA-256 hex of the session id (a copy of
#: the database names no live session); rows of sessions that have expired anyway are pruned
#: at each logout (node/identity/session_ends.py).
citizen_session_ends = Table(
    "citizen_session_ends",
    metadata,
    Column("sid_digest", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Index("ix_citizen_session_ends_expires_at", "expires_at"),
)
