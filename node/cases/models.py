"""Case tables. Times are UNIX seconds (float); calendar dates are ISO strings (YYYY-MM-DD),
which sort and compare correctly as text on both databases."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from node.storage.metadata import metadata

_ID = BigInteger().with_variant(Integer, "sqlite")

cases = Table(
    "cases",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("case_no", String(40), nullable=False, unique=True),
    Column("xt_id", String(64), nullable=False, unique=True),
    Column("mode", String(10), nullable=False),
    Column("item_code", String(40), nullable=False),
    Column("item_name", String(200), nullable=False),
    Column("receiving_region", String(6), nullable=False),
    Column("handling_region", String(6), nullable=False),
    # The other region of this case, for partner-level views (same as ours for 全程网办).
    Column("partner_region", String(6), nullable=False),
    Column("status", String(24), nullable=False),
    Column("status_code", Integer, nullable=False),
    # 多地联办: the bundle this case is a part of.
    Column("bundle_id", _ID, ForeignKey("bundles.id"), nullable=True),
    Column("applicant_kind", String(8), nullable=False),
    Column("applicant_name", String(200), nullable=False),
    Column("applicant_id_type", String(40), nullable=False),
    # Sealed at rest (node/cases/personal.py); the masked copies are what lists show.
    Column("applicant_id_number", String(200), nullable=False),
    Column("applicant_phone", String(200), nullable=False),
    Column("applicant_id_masked", String(40)),
    Column("applicant_phone_masked", String(20)),
    # An HMAC of (case_no, query code) under the node's index key (node/cases/personal.py):
    # the citizen's key to the case, never stored plain.
    Column("query_hash", String(64)),
    # The application as received (case.submit body less personal fields above), JSON.
    Column("application", Text, nullable=False),
    # Working state that is not worth a column each: supplement notice, decision, dispatch,
    # inspection schedule, pending withdrawal, ratings. JSON.
    Column("details", Text, nullable=False, default="{}"),
    Column("received_at", Float, nullable=False),
    Column("accepted_on", String(10)),
    Column("time_limit_days", Integer),
    # Pauses (补正, art. 45 procedures) as JSON [[from, to|null, reason], ...].
    Column("pauses", Text, nullable=False, default="[]"),
    Column("paused", Boolean, nullable=False, default=False),
    # The day the pause in progress began (NULL when the clock runs): a paused case's time
    # status is judged as of this day, in Python (deadlines.time_status) and in SQL alike.
    Column("paused_since", String(10)),
    Column("promised_date", String(10)),
    Column("deadline", String(10)),
    Column("warning_from", String(10)),
    # The warning lead in working days, fixed at 受理 (from the item, sent in case.accepted):
    # both nodes derive warning_from from it, and a later catalogue change moves nothing.
    Column("warning_days", Integer),
    Column("deadline_provisional", Boolean, nullable=False, default=False),
    # 容缺: the catch-up deadline of the deferred materials and the day its warning starts,
    # while any is outstanding (NULL once every deferred material is in).
    Column("deferred_until", String(10)),
    Column("deferred_warning_from", String(10)),
    # The inputs of deferred_until and deferred_warning_from: the working days counted from
    # the day of 收件 (the date of application.received_at) and the warning lead; and whether
    # any of those days fell in a year the calendar did not cover (a calendar load recomputes
    # them then, like deadline_provisional).
    Column("deferred_days", Integer),
    Column("deferred_warning_days", Integer),
    Column("deferred_provisional", Boolean, nullable=False, default=False),
    # Open 差评 rectification deadline (date), if any.
    Column("rectification_due", String(10)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Audit chain head: the hash of the newest event and the number of events.
    Column("event_count", Integer, nullable=False, default=0),
    Column("head_hash", String(64), nullable=False, default=""),
)
#: The inbox order (overdue first: earliest deadline first, cases without one last, newest
#: first within a day). No bound parameters, so both databases match it to these indexes.
DUE_ORDER = (cases.c.deadline.is_(None), cases.c.deadline, cases.c.received_at.desc())
Index("ix_cases_due", *DUE_ORDER)
# warning_from and partner_region at the end make it covering for the time-status filters
# and for supervision's time-status counts.
# paused_since too: the running-clock branch of a time-status filter (paused_since IS NULL)
# stays an index-only walk.
Index(
    "ix_cases_status_due",
    cases.c.status,
    *DUE_ORDER,
    cases.c.warning_from,
    cases.c.partner_region,
    cases.c.paused_since,
)
# The paused cases only (a few per cent of the clocked ones), for the paused branch of a
# time-status filter, judged as of paused_since: walked in due order without the others.
Index(
    "ix_cases_paused_due",
    cases.c.status,
    *DUE_ORDER,
    cases.c.paused_since,
    cases.c.warning_from,
    sqlite_where=cases.c.paused_since.is_not(None),
    postgresql_where=cases.c.paused_since.is_not(None),
)
Index("ix_cases_partner_status_due", cases.c.partner_region, cases.c.status, *DUE_ORDER)
# Prefix search (LIKE 'x%'). SQLite's LIKE is case-insensitive, so only a NOCASE index serves
# it; PostgreSQL needs the pattern operator class unless the collation is "C". deadline and
# received_at let the search sort its matches from the index alone.
Index(
    "ix_cases_case_no_nocase",
    cases.c.case_no.collate("NOCASE"),
    cases.c.deadline,
    cases.c.received_at,
).ddl_if(dialect="sqlite")
Index(
    "ix_cases_applicant_name_nocase",
    cases.c.applicant_name.collate("NOCASE"),
    cases.c.deadline,
    cases.c.received_at,
).ddl_if(dialect="sqlite")
Index(
    "ix_cases_case_no_pattern",
    cases.c.case_no,
    postgresql_ops={"case_no": "varchar_pattern_ops"},
    postgresql_include=["deadline", "received_at"],
).ddl_if(dialect="postgresql")
Index(
    "ix_cases_applicant_name_pattern",
    cases.c.applicant_name,
    postgresql_ops={"applicant_name": "varchar_pattern_ops"},
    postgresql_include=["deadline", "received_at"],
).ddl_if(dialect="postgresql")
Index("ix_cases_received_at", cases.c.received_at)
# Supervision's 容缺 list, earliest catch-up deadline first: walked in order, it stops after
# the page; warning date and status in the index spare a table read per skipped entry.
Index("ix_cases_deferred", cases.c.deferred_until, cases.c.deferred_warning_from, cases.c.status)
Index("ix_cases_bundle", cases.c.bundle_id)

#: Cases per (partner region, status), changed in the same transaction as every status change
#: (``records.record``), so supervision reads a few hundred rows instead of counting the whole
#: table. ``rebuild_status_counts`` recounts it from ``cases``.
case_status_counts = Table(
    "case_status_counts",
    metadata,
    Column("partner_region", String(6), primary_key=True),
    Column("status", String(24), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

#: Cases whose clock runs (accepted, supplement_pending, inspection, with a deadline) per
#: (partner region, deadline, warning date, pause start), kept like ``case_status_counts``:
#: supervision's time-status counts sum a few thousand rows instead of reading every clocked
#: case.
case_due_counts = Table(
    "case_due_counts",
    metadata,
    Column("partner_region", String(6), primary_key=True),
    Column("deadline", String(10), primary_key=True),
    # "" when a case has no warning date.
    Column("warning_from", String(10), primary_key=True),
    # The day the case's pause began, "" when its clock runs (judged by today).
    Column("paused_since", String(10), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

#: The case's event log: hash-chained, append-only.
case_events = Table(
    "case_events",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("case_id", _ID, ForeignKey("cases.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("actor", String(80), nullable=False),
    Column("action", String(40), nullable=False),
    Column("from_status", String(24)),
    Column("to_status", String(24)),
    # What changed and why, JSON (the envelope jti that carried it, for the audit link).
    Column("data", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("case_id", "seq"),
)

#: 多地联办: one application, one window, several handling regions.
bundles = Table(
    "bundles",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("bundle_no", String(40), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)

#: Daily case number counters: case numbers are <region>-<yyyymmdd>-<n>.
case_counters = Table(
    "case_counters",
    metadata,
    Column("day", String(8), primary_key=True),
    Column("next_no", Integer, nullable=False),
)

#: 好差评: one row per rating; a 1-2 rating opens a rectification (整改) at the handling region.
ratings = Table(
    "ratings",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("rating_id", String(36), nullable=False, unique=True),
    Column("case_id", _ID, ForeignKey("cases.id"), nullable=False, index=True),
    Column("level", Integer, nullable=False),
    Column("stage", String(10), nullable=False),
    Column("channel", Integer, nullable=False),
    Column("comment", Text),
    Column("real_name", Boolean, nullable=False),
    Column("rated_at", Float, nullable=False),
    Column("rectification_due", String(10)),
    # The inputs of rectification_due (working days from the day of rated_at, China time) and
    # whether it reached into a year the calendar did not cover (recomputed on a load).
    Column("rectification_days", Integer),
    Column("rectification_provisional", Boolean, nullable=False, default=False),
    Column("rectified_at", Float),
    Column("rectification", Text),
    # 回访 follow-up record, JSON.
    Column("follow_up", Text),
)
Index("ix_ratings_open", ratings.c.level, ratings.c.rectified_at)

#: Files staff uploaded (scans of materials, result documents), by content digest.
uploads = Table(
    "uploads",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("media_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("name", String(200), nullable=False),
    Column("uploaded_at", Float, nullable=False),
    Column("uploaded_by", String(80), nullable=False),
    #: When a case first used the file (NULL: nobody has; the janitor removes such uploads
    #: after a day, node/ops/janitor.py).
    Column("claimed_at", Float, nullable=True),
    Index(
        "ix_uploads_unclaimed",
        "uploaded_at",
        sqlite_where=text("claimed_at IS NULL"),
        postgresql_where=text("claimed_at IS NULL"),
    ),
)
