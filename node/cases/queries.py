"""Inbox and supervision queries (read-only)."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases import records
from node.cases.deadlines import TIME_STATUS_LABELS
from node.cases.lifecycle import STATUS_LABELS, Status
from node.cases.models import case_due_counts, case_status_counts, cases, ratings
from node.cases.rating_figures import rating_figures

CLOCKED = (Status.ACCEPTED, Status.SUPPLEMENT_PENDING, Status.INSPECTION)
#: Cases per supervision list (overdue, warning, 容缺): one inbox page, most urgent first.
LIST_LIMIT = 50
#: A 容缺 catch-up no longer matters once the case is refused, withdrawn or handed over.
FINISHED = [str(s) for s in (Status.NOT_ACCEPTED, Status.WITHDRAWN, Status.DENIED)] + [
    str(Status.DISPATCHED),
    str(Status.DELIVERED),
]


def _due(table: Any) -> tuple[Any, ...]:  # DUE_ORDER, on the table or a subquery
    # No bound parameters in ORDER BY, so it matches the expression indexes ix_cases_*due.
    return (table.c.deadline.is_(None), table.c.deadline, table.c.received_at.desc())


def _prefix(q: str) -> str:
    return q.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def time_status_branches(value: str, today: date) -> list[list[Any]]:
    """The time status condition without its status part (the caller adds the statuses), as
    two alternatives that each walk an index in due order: cases whose clock runs, judged by
    today (``ix_cases_status_due``), and paused cases, judged as of the day their pause began
    (``ix_cases_paused_due``), as ``deadlines.time_status`` does."""
    t = today.isoformat()
    since = cases.c.paused_since
    branches = []
    for as_of, which in ((t, since.is_(None)), (since, since.is_not(None))):
        if value == "overdue":
            terms = [cases.c.deadline < as_of]
        elif value == "warning":
            terms = [cases.c.deadline >= as_of, cases.c.warning_from <= as_of]
        else:
            terms = [or_(cases.c.warning_from > as_of, cases.c.warning_from.is_(None))]
        branches.append([which, *terms])
    return branches


async def inbox(
    conn: AsyncConnection,
    *,
    today: date,
    status: list[str] | None = None,
    time_status: str | None = None,
    q: str | None = None,
    partner: str | None = None,
    side: str | None = None,
    region: str,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    where: list[Any] = []
    statuses = list(dict.fromkeys(status)) if status else None
    # Alternatives ORed together (each branch of the merge below takes one).
    alternatives: list[list[Any]] = [[]]
    if time_status:
        clocked = [str(s) for s in CLOCKED]
        statuses = [s for s in statuses if s in clocked] if statuses else clocked
        alternatives = time_status_branches(time_status, today)
    if partner:
        where.append(cases.c.partner_region == partner)
    if side == "handling":
        where.append(cases.c.handling_region == region)
    elif side == "receiving":
        where.append(cases.c.receiving_region == region)
    if q:
        q = q.strip()
        if q[:6].isdigit() and "-" in q:
            where.append(cases.c.case_no.like(_prefix(q), escape="/"))
        else:
            # (Every case_no starts with six digits and a dash, so "or case_no == q" could
            # never match here; without it the name index alone answers.)
            where.append(cases.c.applicant_name.like(_prefix(q), escape="/"))
    if statuses is not None and not statuses:
        return {"cases": [], "limit": limit, "offset": offset}
    # First the ids of the page, in due order; then only those rows are read.
    if q:
        # Search first (prefix index), then sort what it found. MATERIALIZED keeps the planner
        # from walking ix_cases_due and filtering on the pattern, hoping to fill the page early:
        # with a misestimated prefix that reads the whole index (2.4 s on PostgreSQL at 1M).
        if statuses:
            where.append(cases.c.status.in_(statuses))
        if len(alternatives) > 1:
            where.append(or_(*(and_(*terms) for terms in alternatives)))
        found = (
            select(cases.c.id, cases.c.deadline, cases.c.received_at)
            .where(*where)
            .cte("found")
            .prefix_with("MATERIALIZED")
        )
        page = select(found.c.id).order_by(*_due(found)).limit(limit).offset(offset)
    elif (statuses and len(statuses) > 1) or len(alternatives) > 1:
        # One branch per status (and per time-status alternative), merged: neither database
        # keeps index order across IN (...) or OR; each branch walks ix_cases_status_due (or
        # _partner_status_due, _paused_due) and stops after offset + limit entries.
        branches = [
            select(cases.c.id, cases.c.deadline, cases.c.received_at)
            .where(*([cases.c.status == s] if s else []), *terms, *where)
            .order_by(*_due(cases))
            .limit(offset + limit)
            .subquery()
            for s in (statuses or [None])  # type: ignore[list-item]
            for terms in alternatives
        ]
        merged = union_all(*(select(b) for b in branches)).subquery()
        page = select(merged.c.id).order_by(*_due(merged)).limit(limit).offset(offset)
    else:
        if statuses:
            where.append(cases.c.status == statuses[0])
        page = select(cases.c.id).where(*where).order_by(*_due(cases)).limit(limit).offset(offset)
    query = select(cases).where(cases.c.id.in_(page)).order_by(*_due(cases))
    rows = (await conn.execute(query)).all()
    return {"cases": [records.summary(r, today) for r in rows], "limit": limit, "offset": offset}


async def supervision(
    conn: AsyncConnection, *, today: date, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    t = today.isoformat()
    per_partner: dict[str, dict[str, Any]] = {}
    # Counts by status: the maintained counter table (partners × statuses rows), not a count
    # of the whole cases table (docs/cases.md, "Supervision counts").
    for partner, status, count in (
        await conn.execute(
            select(
                case_status_counts.c.partner_region,
                case_status_counts.c.status,
                case_status_counts.c.count,
            ).where(case_status_counts.c.count != 0)
        )
    ).all():
        entry = per_partner.setdefault(partner, {"by_status": {}, "by_time_status": {}})
        entry["by_status"][status] = int(count)
    # Time status: the maintained counts of clocked cases per (partner, deadline, warning
    # date) — a few thousand rows — summed with the same rule as the inbox filter.
    due = case_due_counts.c
    # A paused case is judged as of the day its pause began (its clock is stopped).
    as_of = case((due.paused_since == "", t), else_=due.paused_since)
    ts = case(
        (due.deadline < as_of, "overdue"),
        (func.coalesce(func.nullif(due.warning_from, ""), "9999-12-31") <= as_of, "warning"),
        else_="normal",
    )
    for partner, time_status, count in (
        await conn.execute(
            select(due.partner_region, ts.label("ts"), func.sum(due.count))
            .where(due.count != 0)
            .group_by(due.partner_region, ts)
        )
    ).all():
        entry = per_partner.setdefault(partner, {"by_status": {}, "by_time_status": {}})
        entry["by_time_status"][time_status] = int(count)
    # The most urgent first, one inbox page each; the inbox (?time_status=) pages further.
    overdue = await inbox(conn, today=today, time_status="overdue", region="", limit=LIST_LIMIT)
    warning = await inbox(conn, today=today, time_status="warning", region="", limit=LIST_LIMIT)
    open_ratings = (
        await conn.execute(
            select(ratings, cases.c.case_no, cases.c.item_name)
            .join(cases, cases.c.id == ratings.c.case_id)
            .where(ratings.c.level <= 2, ratings.c.rectified_at.is_(None))
            .order_by(ratings.c.rectification_due, ratings.c.rated_at)
            .limit(200)
        )
    ).all()
    # 容缺 catch-up in warning or overdue, earliest deadline first: ix_cases_deferred walked in
    # order (no sort), stopping after LIST_LIMIT entries; then only those rows are read.
    deferred_ids = (
        select(cases.c.id)
        .where(
            cases.c.deferred_until.is_not(None),
            cases.c.deferred_warning_from <= t,
            cases.c.status.not_in(FINISHED),
        )
        .order_by(cases.c.deferred_until)
        .limit(LIST_LIMIT)
    )
    deferred_rows = (
        await conn.execute(
            select(cases).where(cases.c.id.in_(deferred_ids)).order_by(cases.c.deferred_until)
        )
    ).all()
    deferred = [records.summary(r, today) for r in deferred_rows]
    return {
        "partners": per_partner,
        "status_labels": {str(k): v for k, v in STATUS_LABELS.items()},
        "time_status_labels": {str(k): v for k, v in TIME_STATUS_LABELS.items()},
        "overdue": overdue["cases"],
        "warning": warning["cases"],
        "deferred_overdue": [c for c in deferred if c["deferred_status"] == "overdue"],
        "deferred_warning": [c for c in deferred if c["deferred_status"] == "warning"],
        # Ours to rectify (the handling region sets a deadline), and those the other region
        # rectifies (the receiving region follows them up).
        "open_rectifications": [
            _rectification(r, t) for r in open_ratings if r.rectification_due is not None
        ],
        "awaiting_rectification": [
            _rectification(r, t) for r in open_ratings if r.rectification_due is None
        ],
        "ratings": await rating_figures(conn, now=now),
    }


def _rectification(r: Any, t: str) -> dict[str, Any]:
    return {
        "rating_id": r.rating_id,
        "case_id": r.case_id,
        "case_no": r.case_no,
        "item_name": r.item_name,
        "level": r.level,
        "comment": r.comment,
        "rectification_due": r.rectification_due,
        "rectification_provisional": bool(r.rectification_provisional),
        "overdue": bool(r.rectification_due and r.rectification_due < t),
    }


def _due_select() -> Any:
    """Clocked cases counted per (partner, deadline, warning date, pause start), from
    ``cases``."""
    warning = func.coalesce(cases.c.warning_from, "")
    since = func.coalesce(cases.c.paused_since, "")
    return (
        select(cases.c.partner_region, cases.c.deadline, warning, since, func.count())
        .where(cases.c.status.in_([str(s) for s in CLOCKED]), cases.c.deadline.is_not(None))
        .group_by(cases.c.partner_region, cases.c.deadline, warning, since)
    )


async def rebuild_status_counts(conn: AsyncConnection) -> int:
    """Recount ``case_status_counts`` and ``case_due_counts`` from ``cases`` (after a bulk
    load, or to repair them); returns the number of cases counted."""
    await conn.execute(delete(case_status_counts))
    await conn.execute(
        insert(case_status_counts).from_select(
            ["partner_region", "status", "count"],
            select(cases.c.partner_region, cases.c.status, func.count()).group_by(
                cases.c.partner_region, cases.c.status
            ),
        )
    )
    await conn.execute(delete(case_due_counts))
    await conn.execute(
        insert(case_due_counts).from_select(
            ["partner_region", "deadline", "warning_from", "paused_since", "count"],
            _due_select(),
        )
    )
    total = (await conn.execute(select(func.sum(case_status_counts.c.count)))).scalar()
    return int(total or 0)


async def status_count_faults(conn: AsyncConnection) -> list[tuple[str, str, int, int]]:
    """(partner, key, counted, maintained) wherever the maintained counts differ from a fresh
    count of ``cases`` (empty when they agree). ``key`` is a status, or
    ``deadline/warning/paused_since`` for the time-status counts."""
    counted: dict[tuple[str, str], int] = {}
    kept: dict[tuple[str, str], int] = {}
    for p, st, n in (
        await conn.execute(
            select(cases.c.partner_region, cases.c.status, func.count()).group_by(
                cases.c.partner_region, cases.c.status
            )
        )
    ).all():
        counted[(p, st)] = int(n)
    for p, st, n in (await conn.execute(select(case_status_counts))).all():
        kept[(p, st)] = int(n)
    for p, dl, wf, ps, n in (await conn.execute(_due_select())).all():
        counted[(p, f"{dl}/{wf}/{ps}")] = int(n)
    for p, dl, wf, ps, n in (await conn.execute(select(case_due_counts))).all():
        kept[(p, f"{dl}/{wf}/{ps}")] = int(n)
    return [
        (p, key, counted.get((p, key), 0), kept.get((p, key), 0))
        for p, key in sorted(set(counted) | set(kept))
        if counted.get((p, key), 0) != kept.get((p, key), 0)
    ]
