"""Applying received messages, per case in ``seq`` order, each exactly once.

A message is applied in the same transaction that marks it applied and moves the case's
cursor, so a crash either applies it and moves on, or does neither. A message whose
predecessor has not arrived waits; it is picked up when the gap fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.federation.models import inbound_cursors, inbound_envelopes, inbound_messages
from node.storage.database import Database
from protocol.envelope import Envelope, parse_envelope

log = logging.getLogger(__name__)

#: Messages applied per pass before the loop yields.
BATCH = 200
#: After this many failed attempts a message is left for an admin (it blocks its case only).
MAX_ATTEMPTS = 5


class BusinessRefusal(Exception):
    """The case domain refuses a message (answered to the sender with ``case.error``)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class MessageHandler(Protocol):
    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply ``envelope`` inside ``conn``'s transaction, or raise BusinessRefusal."""


class RefusalHandler(Protocol):
    async def __call__(
        self, conn: AsyncConnection, envelope: Envelope, refusal: BusinessRefusal
    ) -> None:
        """Answer a refused message (the case domain sends ``case.error``)."""


async def accept_all(conn: AsyncConnection, envelope: Envelope) -> None:
    """The handler of a node with no case domain plugged in: the record is the message."""


class Applier:
    def __init__(
        self,
        db: Database,
        handler: MessageHandler = accept_all,
        on_refused: RefusalHandler | None = None,
    ) -> None:
        self._db = db
        self._handler = handler
        self._on_refused = on_refused
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="applier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                applied = await self.apply_ready()
            except Exception:
                log.exception("applying inbound messages failed")
                applied = 0
            if applied:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def apply_ready(self) -> int:
        """Apply every message whose turn has come; returns how many were applied."""
        async with self._db.read() as conn:
            ready = (
                await conn.execute(
                    select(
                        inbound_messages.c.iss,
                        inbound_messages.c.xt,
                        inbound_messages.c.seq,
                        inbound_messages.c.jti,
                    )
                    .select_from(
                        inbound_messages.outerjoin(
                            inbound_cursors,
                            and_(
                                inbound_cursors.c.iss == inbound_messages.c.iss,
                                inbound_cursors.c.xt == inbound_messages.c.xt,
                            ),
                        )
                    )
                    .where(
                        inbound_messages.c.applied_at.is_(None),
                        inbound_messages.c.attempts < MAX_ATTEMPTS,
                        inbound_messages.c.seq == func.coalesce(inbound_cursors.c.next_seq, 1),
                    )
                    .limit(BATCH)
                )
            ).all()
        count = 0
        for row in ready:
            if await self._apply_one(row.iss, row.xt, row.seq, row.jti):
                count += 1
        return count

    async def _apply_one(self, iss: str, xt: str, seq: int, jti: str) -> bool:
        try:
            async with self._db.write() as conn:
                cursor = (
                    await conn.execute(
                        select(inbound_cursors.c.next_seq)
                        .where(inbound_cursors.c.iss == iss, inbound_cursors.c.xt == xt)
                        .with_for_update()
                    )
                ).scalar_one_or_none()
                if (cursor or 1) != seq:
                    return False  # another replica got here first
                token = (
                    await conn.execute(
                        select(inbound_envelopes.c.token).where(inbound_envelopes.c.jti == jti)
                    )
                ).scalar_one()
                envelope = _reparse(token)
                outcome = "applied"
                try:
                    async with conn.begin_nested():
                        await self._handler(conn, envelope)
                except BusinessRefusal as refusal:
                    outcome = f"refused:{refusal.code}"[:80]
                    if self._on_refused is not None:
                        await self._on_refused(conn, envelope, refusal)
                await conn.execute(
                    update(inbound_messages)
                    .where(
                        inbound_messages.c.iss == iss,
                        inbound_messages.c.xt == xt,
                        inbound_messages.c.seq == seq,
                    )
                    .values(applied_at=time.time(), outcome=outcome)
                )
                if cursor is None:
                    await conn.execute(
                        inbound_cursors.insert().values(iss=iss, xt=xt, next_seq=seq + 1)
                    )
                else:
                    await conn.execute(
                        update(inbound_cursors)
                        .where(inbound_cursors.c.iss == iss, inbound_cursors.c.xt == xt)
                        .values(next_seq=seq + 1)
                    )
            return True
        except Exception as exc:
            log.exception("applying message failed", extra={"iss": iss, "xt": xt, "seq": seq})
            async with self._db.write() as conn:
                await conn.execute(
                    update(inbound_messages)
                    .where(
                        inbound_messages.c.iss == iss,
                        inbound_messages.c.xt == xt,
                        inbound_messages.c.seq == seq,
                    )
                    .values(
                        attempts=inbound_messages.c.attempts + 1,
                        last_error=f"{type(exc).__name__}: {exc}"[:500],
                    )
                )
            return False


def _reparse(token: str) -> Envelope:
    """Rebuild the Envelope of a stored token (verified on arrival, not re-verified)."""
    parsed = parse_envelope(token)
    claims = parsed.claims
    return Envelope(
        iss=claims["iss"],
        aud=claims["aud"],
        jti=claims["jti"],
        iat=claims["iat"],
        exp=claims["exp"],
        typ=claims["typ"],
        xt=claims["xt"],
        seq=claims["seq"],
        body=claims["body"],
        blobs=claims["blobs"],
        kid=parsed.kid,
        compact=parsed.compact,
        digest=parsed.digest,
    )
