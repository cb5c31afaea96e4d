"""Opening a video session when the case domain schedules one (its ``InspectionScheduler``
port, node/cases/ports.py): the session row and the applicant's one-time join token, written
in the case's own transaction."""

from __future__ import annotations

import json

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from inspection import tokens
from inspection.models import inspection_sessions
from node.accounts.models import users
from node.cases.ports import SessionPlan

#: How long after its start a join token stays valid when no duration is given.
DEFAULT_WINDOW_S = 4 * 3600


class SessionScheduler:
    async def display_names(self, conn: AsyncConnection, usernames: list[str]) -> dict[str, str]:
        rows = await conn.execute(
            select(users.c.username, users.c.display_name).where(users.c.username.in_(usernames))
        )
        return {row.username: row.display_name for row in rows}

    async def open_session(self, conn: AsyncConnection, plan: SessionPlan, *, now: float) -> str:
        """Store the session (cancelling earlier ones of the case) and return the applicant's
        one-time join token."""
        await conn.execute(
            update(inspection_sessions)
            .where(
                inspection_sessions.c.case_id == plan.case_id,
                inspection_sessions.c.status == "scheduled",
            )
            .values(status="cancelled")
        )
        secret = tokens.new_secret()
        expires = max(plan.scheduled_at, now) + (plan.duration_minutes or 0) * 60 + DEFAULT_WINDOW_S
        await conn.execute(
            inspection_sessions.insert().values(
                id=plan.session_id,
                case_id=plan.case_id,
                xt_id=plan.xt_id,
                case_no=plan.case_no,
                kind=plan.kind,
                status="scheduled",
                scheduled_at=plan.scheduled_at,
                expires_at=expires,
                token_secret=secret,
                checklist=json.dumps(plan.checklist, ensure_ascii=False),
                results="{}",
                participants=json.dumps(plan.participants, ensure_ascii=False),
                site_address=plan.site_address,
                created_by=plan.created_by,
                created_at=now,
            )
        )
        return tokens.issue(secret, plan.session_id, role="applicant", now=now, expires_at=expires)
