"""Ending a citizen's page session for every copy of its cookie (``citizen_session_ends``).

The session is a sealed cookie: the browser cannot change it, but a copy (taken from a shared
phone, by malware) stays valid until it expires, and clearing the cookie at logout clears only
the browser's own. A logout therefore records the session's id (as its SHA-256) until the
session's own expiry; a session whose id is recorded counts as none, in every process of the
node (the table is in the node's database). Each logout also forgets the ends of sessions that
have expired anyway, so the table holds at most the logouts of the last session lifetime.
"""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import delete, select

from node.identity.models import citizen_session_ends
from node.identity.session import CitizenSession
from node.storage.database import Database
from node.storage.upserts import conflict_insert


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


async def end_session(db: Database, session: CitizenSession, now: float | None = None) -> None:
    """Record that ``session`` ended (a logout); a second end of it changes nothing."""
    moment = time.time() if now is None else now
    row = {"sid_digest": _digest(session.sid), "expires_at": session.expires, "ended_at": moment}
    async with db.write() as conn:
        insert = conflict_insert(conn.dialect.name)
        await conn.execute(insert(citizen_session_ends).values(row).on_conflict_do_nothing())
        await conn.execute(
            delete(citizen_session_ends).where(citizen_session_ends.c.expires_at < moment)
        )


async def session_ended(db: Database, session: CitizenSession) -> bool:
    """Whether ``session`` was ended by a logout."""
    async with db.read() as conn:
        found = await conn.execute(
            select(citizen_session_ends.c.sid_digest).where(
                citizen_session_ends.c.sid_digest == _digest(session.sid)
            )
        )
        return found.first() is not None
