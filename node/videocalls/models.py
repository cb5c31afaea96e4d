"""视频办 tables (migration 0017). Times are UNIX seconds (float).

Snapshots and recordings of a call are ``inspection_items`` rows under the call's id (the
inspection machinery writes them; call ids are UUIDs like session ids, so they never meet).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, String, Table, Text

from node.storage.metadata import metadata

_ID = BigInteger().with_variant(Integer, "sqlite")

#: One call request of a citizen: waiting → active (picked up) → ended; or waiting → left
#: (the citizen left the queue) | expired (the node restarted while it waited).
video_calls = Table(
    "video_calls",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("status", String(12), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("picked_at", Float),
    # The first video frame of the citizen relayed to the clerk.
    Column("connected_at", Float),
    Column("ended_at", Float),
    Column("end_reason", String(20)),
    # sha256 of the citizen's call key (the capability their page holds).
    Column("key_hash", String(64), nullable=False),
    Column("item_code", String(40)),
    Column("topic", String(200)),
    # A phone for a callback, sealed (place ``video_calls.phone``), and its masked copy.
    Column("phone", Text),
    Column("phone_masked", String(20)),
    # The citizen agreed to be recorded (asked before the call; no consent, no recorder).
    Column("consent", Boolean, nullable=False),
    Column("clerk", String(64)),
    Column("clerk_name", String(100)),
    # 好差评 of the call (channel "video"): 1..5, a comment (required for 1 and 2).
    Column("rating_level", Integer),
    Column("rating_comment", Text),
    Column("rating_channel", String(12)),
    Column("rated_at", Float),
    # 预约: a slot at the window booked during the call (ISO local time, China) and a note.
    Column("appointment_at", String(20)),
    Column("appointment_note", String(200)),
    # 视频收件: when the clerk opened a window application with the call's snapshots.
    Column("application_item", String(40)),
    Column("application_at", Float),
    Index("ix_video_calls_status_created_at", "status", "created_at"),
    Index("ix_video_calls_created_at", "created_at"),
)

#: A callback asked for outside opening hours (or instead of waiting).
video_callbacks = Table(
    "video_callbacks",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    # Sealed (place ``video_callbacks.phone``) and masked.
    Column("phone", Text, nullable=False),
    Column("phone_masked", String(20), nullable=False),
    Column("item_code", String(40)),
    Column("topic", String(200)),
    # open → done
    Column("status", String(12), nullable=False),
    Column("handled_by", String(64)),
    Column("handled_at", Float),
    Index("ix_video_callbacks_status_created_at", "status", "created_at"),
)

#: Clerks who opted in to take video calls (helpers take them by their role).
video_duty = Table(
    "video_duty",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("on_duty", Boolean, nullable=False),
    Column("changed_at", Float, nullable=False),
)
