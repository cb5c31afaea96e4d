"""Federation tables. Times are UNIX seconds (float): portable, sortable and cheap."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from node.storage.metadata import metadata

#: The places (associated data) of the sealed envelope columns: a value sealed for one does
#: not open in the other.
INBOUND_TOKEN = "inbound_envelopes.token"
OUTBOX_TOKEN = "outbox.token"

#: This node's own signing keys (private halves are files in the node's folder).
own_keys = Table(
    "own_keys",
    metadata,
    Column("kid", String(40), primary_key=True),
    Column("public_key", String(64), nullable=False),
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    # Set when `tongban keys rotate` replaced this key; it stays valid until not_after.
    Column("retired_at", Float),
)

#: Partner keys learned from partners' node descriptors (signed by a key we already trusted).
#: Keys from partners.toml are not copied here: that file stays the trust root.
partner_keys = Table(
    "partner_keys",
    metadata,
    Column("kid", String(40), primary_key=True),
    Column("region", String(6), nullable=False, index=True),
    Column("public_key", String(64), nullable=False),
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    Column("signed_by", String(40), nullable=False),
    Column("learned_at", Float, nullable=False),
)

#: Every envelope we acknowledged, with the receipt we gave, by jti. Written before the receipt
#: leaves, so a resend gets the same receipt and a crash loses nothing acknowledged. ``token``
#: (the compact JWS, whose body holds personal data) is sealed (``INBOUND_TOKEN``); ``digest``
#: and ``receipt`` are not, so a resend is answered without opening anything.
inbound_envelopes = Table(
    "inbound_envelopes",
    metadata,
    Column("jti", String(36), primary_key=True),
    Column("iss", String(6), nullable=False),
    Column("xt", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("typ", String(64), nullable=False),
    Column("kid", String(40), nullable=False),
    Column("digest", String(64), nullable=False),
    # Sealed: node/storage/sealing.py, place INBOUND_TOKEN (legacy rows: the compact JWS).
    Column("token", Text, nullable=False),
    Column("receipt", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    # True when another envelope already holds this (iss, xt, seq): a re-issue, never applied.
    Column("duplicate", Boolean, nullable=False, default=False),
)

#: The apply queue: at most one message per (iss, xt, seq), applied in seq order per case.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("iss", String(6), primary_key=True),
    Column("xt", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("jti", String(36), nullable=False),
    Column("typ", String(64), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("applied_at", Float),
    # "applied", or "refused:<code>" when the case domain refused it (answered by case.error).
    Column("outcome", String(80)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
)
_unapplied = inbound_messages.c.applied_at.is_(None)
Index(
    "ix_inbound_messages_unapplied",
    inbound_messages.c.iss,
    inbound_messages.c.xt,
    sqlite_where=_unapplied,
    postgresql_where=_unapplied,
)

#: Next seq expected per (iss, xt): messages wait here until the gap before them fills.
inbound_cursors = Table(
    "inbound_cursors",
    metadata,
    Column("iss", String(6), primary_key=True),
    Column("xt", String(64), primary_key=True),
    Column("next_seq", Integer, nullable=False),
)

#: Refused inbound requests, counted: one row per (hour, source, endpoint, code), never one per
#: request (refusals come before authentication, so anyone can cause them). ``source`` is the
#: client address (an IPv6 address by its /64), or ``iss:<claimed issuer>`` when there is none.
#: ``detail``, ``iss``, ``jti`` and ``size`` are those of the latest refusal; never the body (it
#: may hold personal data). Rows older than ``REJECTION_RETENTION`` are pruned.
rejections = Table(
    "rejections",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    # Start of the hour (UNIX seconds).
    Column("hour", BigInteger, nullable=False),
    Column("source", String(64), nullable=False),
    Column("endpoint", String(40), nullable=False),
    Column("code", String(40), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("detail", String(300), nullable=False),
    Column("iss", String(6)),
    Column("jti", String(36)),
    Column("size", Integer),
    UniqueConstraint("hour", "source", "endpoint", "code"),
)
Index("ix_rejections_last_at", rejections.c.last_at)

#: Next seq to give per (xt, partner): per case and sender, as the contract says.
outbound_sequences = Table(
    "outbound_sequences",
    metadata,
    Column("xt", String(64), primary_key=True),
    Column("partner", String(6), primary_key=True),
    Column("next_seq", Integer, nullable=False),
)

#: The transactional outbox: written in the same transaction as the change it announces.
outbox = Table(
    "outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("partner", String(6), nullable=False),
    Column("jti", String(36), nullable=False),
    Column("xt", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("typ", String(64), nullable=False),
    # Sealed: node/storage/sealing.py, place OUTBOX_TOKEN (legacy rows: the compact JWS).
    Column("token", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    # Space-separated sha256 digests of the blobs the envelope names.
    Column("blobs", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(64)),
    Column("claimed_until", Float),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("delivered_at", Float),
    Column("receipt", Text),
    # Set when the partner refused the envelope for good (a 4xx other than 409).
    Column("dead_at", Float),
    # Earlier jtis of this message, space-separated, when it was re-issued before expiry.
    Column("reissued_from", Text),
    UniqueConstraint("jti"),
    UniqueConstraint("partner", "xt", "seq"),
)
_pending = outbox.c.delivered_at.is_(None) & outbox.c.dead_at.is_(None)
Index(
    "ix_outbox_pending",
    outbox.c.partner,
    outbox.c.id,
    sqlite_where=_pending,
    postgresql_where=_pending,
)
Index("ix_outbox_delivered_at", outbox.c.delivered_at)
