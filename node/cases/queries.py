"""Inbox and supervision queries (read-only)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import case, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases import records
from node.cases.lifecycle import STATUS_LABELS, Status
from node.cases.models import cases, ratings

CLOCKED = (Status.ACCEPTED, Status.SUPPLEMENT_PENDING, Status.INSPECTION)


def _due(table: Any) -> tuple[Any, ...]:  # DUE_ORDER, on the table or a subquery
    # No bound parameters in ORDER BY, so it matches the expression indexes ix_cases_*due.
    return (table.c.deadline.is_(None), table.c.deadline, table.c.received_at.desc())


def _prefix(q: str) -> str:
    return q.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def time_status_terms(value: str, today: date) -> list[Any]:
    """The time status condition without its status part (the caller adds the statuses)."""
    t = today.isoformat()
    if value == "overdue":
        return [cases.c.deadline < t]
    if value == "warning":
        return [cases.c.deadline >= t, cases.c.warning_from <= t]
    return [or_(cases.c.warning_from > t, cases.c.warning_from.is_(None))]


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
    if time_status:
        clocked = [str(s) for s in CLOCKED]
        statuses = [s for s in statuses if s in clocked] if statuses else clocked
        where += time_status_terms(time_status, today)
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
        found = (
            select(cases.c.id, cases.c.deadline, cases.c.received_at)
            .where(*where)
            .cte("found")
            .prefix_with("MATERIALIZED")
        )
        page = select(found.c.id).order_by(*_due(found)).limit(limit).offset(offset)
    elif statuses and len(statuses) > 1:
        # One branch per status, merged: neither database keeps index order across IN (...);
        # each branch walks ix_cases_status_due (or _partner_status_due) and stops after
        # offset + limit entries.
        branches = [
            select(cases.c.id, cases.c.deadline, cases.c.received_at)
            .where(cases.c.status == s, *where)
            .order_by(*_due(cases))
            .limit(offset + limit)
            .subquery()
            for s in statuses
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


async def supervision(conn: AsyncConnection, *, today: date) -> dict[str, Any]:
    t = today.isoformat()
    per_partner: dict[str, dict[str, Any]] = {}
    # Counts by status: an index-only scan of ix_cases_partner_status_due.
    for partner, status, count in (
        await conn.execute(
            select(cases.c.partner_region, cases.c.status, func.count()).group_by(
                cases.c.partner_region, cases.c.status
            )
        )
    ).all():
        entry = per_partner.setdefault(partner, {"by_status": {}, "by_time_status": {}})
        entry["by_status"][status] = count
    # Time status: only the clocked cases (a few per cent), index-only on ix_cases_status_due.
    ts = case(
        (cases.c.deadline < t, "overdue"), (cases.c.warning_from <= t, "warning"), else_="normal"
    )
    for partner, time_status, count in (
        await conn.execute(
            select(cases.c.partner_region, ts.label("ts"), func.count())
            .where(cases.c.status.in_([str(s) for s in CLOCKED]))
            # ts first: SQLite then reads the covering ix_cases_status_due (status range)
            # rather than skip-scanning ix_cases_partner_status_due and the table.
            .group_by(ts, cases.c.partner_region)
        )
    ).all():
        entry = per_partner.setdefault(partner, {"by_status": {}, "by_time_status": {}})
        entry["by_time_status"][time_status] = count
    overdue = await inbox(conn, today=today, time_status="overdue", region="", limit=100)
    warning = await inbox(conn, today=today, time_status="warning", region="", limit=100)
    open_ratings = (
        await conn.execute(
            select(ratings, cases.c.case_no, cases.c.item_name)
            .join(cases, cases.c.id == ratings.c.case_id)
            .where(ratings.c.level <= 2, ratings.c.rectified_at.is_(None))
            .order_by(ratings.c.rectification_due)
            .limit(200)
        )
    ).all()
    return {
        "partners": per_partner,
        "status_labels": {str(k): v for k, v in STATUS_LABELS.items()},
        "overdue": overdue["cases"],
        "warning": warning["cases"],
        "open_rectifications": [
            {
                "rating_id": r.rating_id,
                "case_id": r.case_id,
                "case_no": r.case_no,
                "item_name": r.item_name,
                "level": r.level,
                "comment": r.comment,
                "rectification_due": r.rectification_due,
                "overdue": bool(r.rectification_due and r.rectification_due < t),
            }
            for r in open_ratings
        ],
    }
