"""Inbox and supervision queries (read-only)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases import records
from node.cases.lifecycle import STATUS_LABELS, Status
from node.cases.models import cases, ratings

#: States whose clock runs (time status applies).
CLOCKED = (Status.ACCEPTED, Status.SUPPLEMENT_PENDING, Status.INSPECTION)


def time_status_filter(value: str, today: date) -> Any:
    t = today.isoformat()
    clocked = cases.c.status.in_([str(s) for s in CLOCKED])
    if value == "overdue":
        return and_(clocked, cases.c.deadline < t)
    if value == "warning":
        return and_(clocked, cases.c.deadline >= t, cases.c.warning_from <= t)
    return and_(clocked, or_(cases.c.warning_from > t, cases.c.warning_from.is_(None)))


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
    """Cases sorted overdue-first (earliest deadline first, cases without one after)."""
    where = []
    if status:
        where.append(cases.c.status.in_(status))
    if time_status:
        where.append(time_status_filter(time_status, today))
    if partner:
        where.append(cases.c.partner_region == partner)
    if side == "handling":
        where.append(cases.c.handling_region == region)
    elif side == "receiving":
        where.append(cases.c.receiving_region == region)
    if q:
        q = q.strip()
        if q[:6].isdigit() and "-" in q:
            where.append(cases.c.case_no.startswith(q, autoescape=True))
        else:
            where.append(
                or_(
                    cases.c.applicant_name.startswith(q, autoescape=True),
                    cases.c.case_no == q,
                )
            )
    query = (
        select(cases)
        .where(*where)
        .order_by(
            case((cases.c.deadline.is_(None), 1), else_=0),
            cases.c.deadline,
            cases.c.received_at.desc(),
        )
        .limit(limit)
        .offset(offset)
    )
    rows = (await conn.execute(query)).all()
    return {"cases": [records.summary(r, today) for r in rows], "limit": limit, "offset": offset}


async def supervision(conn: AsyncConnection, *, today: date) -> dict[str, Any]:
    t = today.isoformat()
    clocked = cases.c.status.in_([str(s) for s in CLOCKED])
    ts = case(
        (and_(clocked, cases.c.deadline < t), "overdue"),
        (and_(clocked, cases.c.warning_from <= t), "warning"),
        (clocked, "normal"),
        else_=None,
    )
    counts = (
        await conn.execute(
            select(cases.c.partner_region, cases.c.status, ts.label("ts"), func.count()).group_by(
                cases.c.partner_region, cases.c.status, ts
            )
        )
    ).all()
    per_partner: dict[str, dict[str, Any]] = {}
    for partner, status, time_status, count in counts:
        entry = per_partner.setdefault(partner, {"by_status": {}, "by_time_status": {}})
        entry["by_status"][status] = entry["by_status"].get(status, 0) + count
        if time_status:
            entry["by_time_status"][time_status] = (
                entry["by_time_status"].get(time_status, 0) + count
            )
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
