"""When a new year's calendar is loaded, provisional deadlines become final: recompute them
from their stored inputs (node/app.py and node/cli.py pass ``recompute_provisional`` to every
calendar load). That is the
promised deadline of accepted cases, the 容缺 catch-up deadline and the 差评 rectification
deadline."""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases import records
from node.cases.deadlines import Calendar, catch_up, compute
from node.cases.models import cases, ratings
from node.clock import CHINA


async def recompute_provisional(conn: AsyncConnection, calendar: Calendar) -> int:
    """Recompute every provisional deadline inside the calendar load's transaction; returns
    how many deadlines were recomputed."""
    rows = (
        await conn.execute(
            select(
                cases.c.id,
                cases.c.partner_region,
                cases.c.status,
                cases.c.accepted_on,
                cases.c.time_limit_days,
                cases.c.pauses,
                cases.c.deadline,
                cases.c.warning_from,
                cases.c.warning_days,
                cases.c.paused_since,
            ).where(cases.c.deadline_provisional.is_(True), cases.c.accepted_on.is_not(None))
        )
    ).all()
    for row in rows:
        # The warning lead fixed at 受理 (older rows: the working days it left before).
        lead = (
            int(row.warning_days)
            if row.warning_days is not None
            else calendar.working_days_between(
                date.fromisoformat(row.warning_from), date.fromisoformat(row.deadline)
            )
        )
        fields = compute(
            calendar,
            accepted_on=date.fromisoformat(row.accepted_on),
            limit_days=int(row.time_limit_days),
            pauses=json.loads(row.pauses),
            warning_days=lead,
        )
        # The promised date stays as fixed at 受理 only if it was final; a provisional one was
        # computed on weekends alone and is corrected with the real holidays.
        await conn.execute(update(cases).where(cases.c.id == row.id).values(**fields.as_columns()))
        await records.count_due(
            conn,
            row.partner_region,
            records.due_key(row.status, row.deadline, row.warning_from, row.paused_since),
            records.due_key(row.status, fields.deadline, fields.warning_from, row.paused_since),
        )
    return (
        len(rows)
        + await _recompute_catch_up(conn, calendar)
        + await _recompute_rectification(conn, calendar)
    )


async def _recompute_catch_up(conn: AsyncConnection, calendar: Calendar) -> int:
    """容缺: provisional catch-up deadlines, from the day of 收件 and the stored working days;
    the deferred materials of the application carry the new date too."""
    rows = (
        await conn.execute(
            select(
                cases.c.id,
                cases.c.application,
                cases.c.details,
                cases.c.deferred_until,
                cases.c.deferred_days,
                cases.c.deferred_warning_days,
            ).where(
                cases.c.deferred_provisional.is_(True),
                cases.c.deferred_until.is_not(None),
                cases.c.deferred_days.is_not(None),
            )
        )
    ).all()
    for row in rows:
        application = json.loads(row.application)
        if not application.get("received_at"):  # pragma: no cover - every case has it
            continue
        start = datetime.fromisoformat(application["received_at"]).astimezone(CHINA).date()
        fields = catch_up(
            calendar,
            start=start,
            days=int(row.deferred_days),
            warning_days=int(row.deferred_warning_days or 0),
        )
        # Materials already caught up keep the date they were handed in against.
        caught = json.loads(row.details or "{}").get("deferred", {}).get("materials", {})
        for material in application.get("materials", []):
            if (
                material.get("status") == "deferred"
                and material.get("deferred_until")
                and material.get("code") not in caught
            ):
                material["deferred_until"] = fields["deferred_until"]
        await conn.execute(
            update(cases)
            .where(cases.c.id == row.id)
            .values(**fields, application=json.dumps(application, ensure_ascii=False))
        )
    return len(rows)


async def _recompute_rectification(conn: AsyncConnection, calendar: Calendar) -> int:
    """差评: provisional rectification deadlines, from the day of the rating and the stored
    working days; the case's open deadline follows."""
    rows = (
        await conn.execute(
            select(
                ratings.c.id,
                ratings.c.case_id,
                ratings.c.rated_at,
                ratings.c.rectification_due,
                ratings.c.rectification_days,
            ).where(
                ratings.c.rectification_provisional.is_(True),
                ratings.c.rectification_due.is_not(None),
                # A rectification done is history: its deadline stays as it was.
                ratings.c.rectified_at.is_(None),
                ratings.c.rectification_days.is_not(None),
            )
        )
    ).all()
    for row in rows:
        start = datetime.fromtimestamp(row.rated_at, CHINA).date()
        due = calendar.add_working_days(start, int(row.rectification_days))
        new = due.date.isoformat()
        await conn.execute(
            update(ratings)
            .where(ratings.c.id == row.id)
            .values(rectification_due=new, rectification_provisional=bool(due.provisional))
        )
        await conn.execute(
            update(cases)
            .where(cases.c.id == row.case_id, cases.c.rectification_due == row.rectification_due)
            .values(rectification_due=new)
        )
    return len(rows)
