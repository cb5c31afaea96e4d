"""Inspection tables (migration 0008). Times are UNIX seconds (float); JSON is text."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from node.storage.metadata import metadata

_ID = BigInteger().with_variant(Integer, "sqlite")

#: One video session: a site inspection (云端勘验) or a video meeting (云见面).
inspection_sessions = Table(
    "inspection_sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("case_id", _ID, nullable=False),
    Column("xt_id", String(64), nullable=False),
    Column("case_no", String(40), nullable=False),
    # "inspection" (云端勘验, with checklist) or "meeting" (云见面, without).
    Column("kind", String(12), nullable=False),
    # scheduled → live → ended (evidence recorded) | cancelled (rescheduled).
    Column("status", String(12), nullable=False),
    Column("scheduled_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    # The HMAC secret of this session's join tokens (hex); a token of another session fails.
    Column("token_secret", String(64), nullable=False),
    # JSON: the checklist points, and the results {index: {result, note, at}}.
    Column("checklist", Text, nullable=False),
    Column("results", Text, nullable=False, default="{}"),
    # JSON: [{"role", "name", "username"?}] — staff participants carry their username.
    Column("participants", Text, nullable=False),
    Column("site_address", String(300)),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("result", String(12)),
    # JSON: the completion (manifest digest, files) once the evidence is recorded.
    Column("evidence", Text),
    # The replica serving the live session, and until when its claim holds unless renewed
    # (inspection/holding.py); NULL: nobody serves it now.
    Column("holder", String(32)),
    Column("held_until", Float),
    Index("ix_inspection_sessions_case_id", "case_id"),
)

#: Join tokens already used (one-time): the jti is unique.
inspection_token_uses = Table(
    "inspection_token_uses",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("session_id", String(36), nullable=False),
    Column("used_at", Float, nullable=False),
    # sha256 of the resume key handed out at this join: reconnects survive a node restart.
    Column("resume_hash", String(64)),
)

#: Evidence captured during a session: snapshots (with location) and finished recordings.
inspection_items = Table(
    "inspection_items",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("session_id", String(36), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("media_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("taken_at", Float, nullable=False),
    # JSON: duration, width/height, frames, location, checklist index, …
    Column("data", Text, nullable=False, default="{}"),
    Index("ix_inspection_items_session_id", "session_id"),
)
