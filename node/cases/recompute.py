"""When a new year's calendar is loaded, provisional deadlines become final: recompute them
from their stored inputs (registered in node.workdays.service.AFTER_LOAD)."""

from __future__ import annotations

import json
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases import records
from node.cases.deadlines import Calendar, compute
from node.cases.models import cases


async def recompute_provisional(conn: AsyncConnection, calendar: Calendar) -> int:
    """Recompute every provisional deadline inside the calendar load's transaction; returns
    how many cases were recomputed."""
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
            records.due_key(row.status, row.deadline, row.warning_from),
            records.due_key(row.status, fields.deadline, fields.warning_from),
        )
    return len(rows)


def register() -> None:
    """Hook the recompute into calendar loads (idempotent; called by the app and the CLI)."""
    from node.workdays.service import AFTER_LOAD

    if recompute_provisional not in AFTER_LOAD:
        AFTER_LOAD.append(recompute_provisional)
