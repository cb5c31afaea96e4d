"""Which replica serves a live inspection session: a claim in the session's row, renewed while
the replica serves it.

A live session's peer connections, recorder and files are in one process. The region's nginx
sends every URL of a session to one replica (docs/inspection.md, "Replicas"), but while it
counts that replica as failed (``max_fails=2 fail_timeout=5s``) it sends them to another,
where a second live copy could start: two recorders writing one session's folder, and the
participants split between two copies that never meet. The claim closes that window: a replica
serves a session only while the row names it as ``holder`` and ``held_until`` has not passed;
another replica refuses with ``session_elsewhere`` (503; the pages try again, and reach the
holder once nginx does). A replica that stops releases its sessions at once; one that dies
leaves them to the others when its claims run out (``LEASE``), or to itself at once when it is
started again in the same place (``replica_id``). A replica that finds at a
renewal that it lost a claim (its database was out of reach for longer than the lease, and
another replica took the session) closes its copy.
"""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Collection
from pathlib import Path

from sqlalchemy import or_, update

from inspection.models import inspection_sessions
from node.storage.database import Database

#: Seconds a claim holds without renewal: how long a dead replica's sessions stay unserved.
LEASE = 10.0
#: Seconds between renewals: three chances before a claim runs out.
RENEW_EVERY = LEASE / 3

_ROW = inspection_sessions.c


def replica_id(host: str, port: int, directory: Path) -> str:
    """A replica's name as a holder: the machine (a container's hostname), the address it
    serves and the node folder. A process started again in the same place is the same
    replica and takes its predecessor's claims at once (the predecessor is gone: two processes
    cannot serve one address); another container, or another port, is another replica."""
    where = f"{socket.gethostname()}\0{host}\0{port}\0{directory.resolve()}"
    return hashlib.sha256(where.encode()).hexdigest()[:32]


class Holding:
    """This replica's claims on live sessions. ``replica`` (``replica_id``; random when not
    given, as for a node run inside another process) names the holder."""

    def __init__(self, db: Database, *, replica: str | None = None, lease: float = LEASE) -> None:
        self.db = db
        self.replica = replica or uuid.uuid4().hex
        self.lease = lease

    async def claim(self, session_id: str, *, now: float | None = None) -> bool:
        """Hold ``session_id`` if nobody else does (or their claim ran out); True if held."""
        now = time.time() if now is None else now
        async with self.db.write() as conn:
            result = await conn.execute(
                update(inspection_sessions)
                .where(
                    _ROW.id == session_id,
                    or_(_ROW.holder.is_(None), _ROW.holder == self.replica, _ROW.held_until < now),
                )
                .values(holder=self.replica, held_until=now + self.lease)
            )
        return result.rowcount == 1

    async def renew(self, session_ids: Collection[str], *, now: float | None = None) -> set[str]:
        """Extend the claims on ``session_ids``; returns those this replica no longer holds."""
        if not session_ids:
            return set()
        now = time.time() if now is None else now
        async with self.db.write() as conn:
            kept = set(
                (
                    await conn.execute(
                        update(inspection_sessions)
                        .where(_ROW.id.in_(list(session_ids)), _ROW.holder == self.replica)
                        .values(held_until=now + self.lease)
                        .returning(_ROW.id)
                    )
                ).scalars()
            )
        return set(session_ids) - kept

    async def release(self, session_ids: Collection[str]) -> None:
        """Give up the claims on ``session_ids`` (those still ours)."""
        if not session_ids:
            return
        async with self.db.write() as conn:
            await conn.execute(
                update(inspection_sessions)
                .where(_ROW.id.in_(list(session_ids)), _ROW.holder == self.replica)
                .values(holder=None, held_until=None)
            )
