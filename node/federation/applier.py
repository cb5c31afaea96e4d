"""Applying received messages, per case in ``seq`` order, each exactly once.

A message is applied in the same transaction that marks it applied and moves the case's
cursor, so a crash either applies it and moves on, or does neither. A message whose
predecessor has not arrived waits; it is picked up when the gap fills.

Several messages (of different cases) share one transaction, each in its own savepoint. The
cursors of the cases in a transaction are locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL):
replicas on one database never apply a message twice, and skip a case another replica is
applying instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.federation.models import (
    INBOUND_TOKEN,
    inbound_cursors,
    inbound_envelopes,
    inbound_messages,
)
from node.storage.database import Database
from node.storage.savepoints import SavepointLost, Savepoints
from node.storage.sealing import SealsValues
from node.storage.upserts import conflict_insert
from node.waiting import wait_event
from protocol.envelope import Envelope, reopen_envelope

log = logging.getLogger(__name__)

#: Messages read per pass (at most one per case).
BATCH = 200
#: Most messages applied in one transaction ...
PER_TRANSACTION = {"sqlite": BATCH, "postgresql": 32}
#: ... and about how long one may take once it has applied ``MIN_PER_TRANSACTION``, seconds:
#: on SQLite it holds the one writer; on PostgreSQL only the locks of its own cases. (A
#: transaction costs about as much as a message: fewer than a few messages per transaction
#: would double the applier's cost.) On SQLite a transaction also ends early, after
#: ``MIN_PER_TRANSACTION``, as soon as another write waits for the writer
#: (``Database.writer_awaited``: a clerk's action, an inbound store; not the delivery's
#: bookkeeping, which is background work as this is): so a backlog is applied in few, full
#: transactions, and nobody waits for more than a few messages.
BUDGET = {"sqlite": 0.1, "postgresql": 0.1}
MIN_PER_TRANSACTION = 8
#: Every this many messages the applier lets the event loop run (``asyncio.sleep(0)``), on
#: SQLite: there a transaction's statements run on the loop (node/storage/sqlite_writer.py) and
#: would otherwise hold every request and delivery for the whole transaction; a write that
#: then asks for the writer is seen at once (above).
BREATHE_EVERY = 8
#: On SQLite, when an inbound store waited for the writer while a transaction of the applier
#: held it (``Database.writer_wanted``), the applier pauses this many times that transaction's
#: length before its next one: a partner waits for that store's receipt, applying can wait.
#: Under a steady inbound flow the applier so takes at most a third of the writer's time and
#: catches up in the gaps (fewer, fuller transactions cost less than many small ones).
YIELD_FACTOR = 2.0
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
        *,
        sealer: SealsValues,
    ) -> None:
        self._db = db
        self._sealer = sealer
        self._handler = handler
        self._on_refused = on_refused
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: How long to pause before the next transaction, seconds: ``YIELD_FACTOR`` times
        #: the time the last one held the writer (BEGIN to the end of COMMIT) if it ended
        #: with an urgent write waiting for the writer, else 0.
        self._pause = 0.0

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
            await wait_event(self._wake, 1.0)

    async def apply_ready(self) -> int:
        """Apply every message whose turn has come; returns how many were applied."""
        async with self._db.read() as conn:
            ready = [
                _Ready(*row)
                for row in (
                    await conn.execute(
                        select(
                            inbound_messages.c.iss,
                            inbound_messages.c.xt,
                            inbound_messages.c.seq,
                            inbound_messages.c.jti,
                            inbound_envelopes.c.token,
                            inbound_cursors.c.next_seq,
                        )
                        .select_from(
                            inbound_messages.join(
                                inbound_envelopes,
                                inbound_envelopes.c.jti == inbound_messages.c.jti,
                            ).outerjoin(
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
                        # Oldest first: a busy case does not hold the others back.
                        .order_by(inbound_messages.c.received_at)
                        .limit(BATCH)
                    )
                ).all()
            ]
        count = 0
        per_transaction = PER_TRANSACTION.get(self._db.engine.dialect.name, 32)
        while ready:
            chunk, ready = ready[:per_transaction], ready[per_transaction:]
            # One lock order for every transaction (replicas never wait on each other in a
            # cycle); a chunk holds at most one message per case.
            chunk.sort(key=lambda i: (i.iss, i.xt))
            self._pause = 0.0
            try:
                applied, left = await self._apply_batch(chunk)
            except Exception:
                # Something outside one message's savepoint failed: one by one, so that the
                # message at fault is found and counted and the others go through.
                log.exception("applying a batch failed; applying its messages one by one")
                applied, left = 0, []
                for item in chunk:
                    applied += await self._apply_alone(item)
            count += applied
            ready = left + ready
            if ready and self._pause:
                await asyncio.sleep(self._pause)
        return count

    async def _apply_batch(self, items: list[_Ready]) -> tuple[int, list[_Ready]]:
        """Apply ``items`` (one per case) in one transaction, for about ``BUDGET`` seconds.

        Returns how many were applied and the items not reached (for the next transaction).
        A message another replica applied meanwhile, or whose case another replica is
        applying now, is skipped without error."""
        budget = BUDGET.get(self._db.engine.dialect.name, 0.1)
        done: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        moved: list[dict[str, Any]] = []
        left: list[_Ready] = []
        # Inline: on SQLite the transaction's many short statements run on the loop, its
        # BEGIN and COMMIT in the writer's thread (node/storage/sqlite_writer.py).
        async with self._db.write(inline=True, background=True) as conn:
            # From here, not from before the wait for the writer: behind a queue of inbound
            # stores that wait may be long, and counting it would end the transaction at once
            # and then pause the applier for twice that wait (seconds, in a burst).
            started = time.monotonic()
            # The cursor of a case seen for the first time: made here, so that it can be
            # locked (replicas on PostgreSQL) and only moved below.
            fresh = [{"iss": i.iss, "xt": i.xt} for i in items if i.cursor is None]
            if fresh:
                insert = conflict_insert(conn.dialect.name)
                await conn.execute(
                    insert(inbound_cursors).values(next_seq=1).on_conflict_do_nothing(), fresh
                )
            cursors = {
                (r.iss, r.xt): r.next_seq
                for r in (
                    await conn.execute(
                        select(
                            inbound_cursors.c.iss,
                            inbound_cursors.c.xt,
                            inbound_cursors.c.next_seq,
                        )
                        .where(
                            tuple_(inbound_cursors.c.iss, inbound_cursors.c.xt).in_(
                                [(i.iss, i.xt) for i in items]
                            )
                        )
                        .order_by(inbound_cursors.c.iss, inbound_cursors.c.xt)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            }
            savepoints = await Savepoints.of(conn)
            # PostgreSQL's statements each wait for the server: the loop runs meanwhile.
            breathe = BREATHE_EVERY if self._db.is_sqlite else 0
            for index, item in enumerate(items):
                if breathe and index and index % breathe == 0:
                    await asyncio.sleep(0)
                if index >= MIN_PER_TRANSACTION and (
                    self._db.writer_awaited or time.monotonic() - started > budget
                ):
                    left = items[index:]
                    break
                if cursors.get((item.iss, item.xt)) != item.seq:
                    continue  # applied already, or another replica is applying this case
                key = {"b_iss": item.iss, "b_xt": item.xt, "b_seq": item.seq}
                try:
                    outcome = await self._apply(conn, savepoints, item)
                except _TransactionSpoiled:
                    raise
                except Exception as exc:
                    log.exception(
                        "applying message failed",
                        extra={"iss": item.iss, "xt": item.xt, "seq": item.seq},
                    )
                    failed.append({**key, "b_error": f"{type(exc).__name__}: {exc}"[:500]})
                    continue
                done.append({**key, "b_outcome": outcome})
                moved.append({**key, "b_next": item.seq + 1})
            now = time.time()
            if done:
                await conn.execute(_MARK_APPLIED, [{**d, "b_now": now} for d in done])
                await conn.execute(_MOVE_CURSOR, moved)
            if failed:
                await conn.execute(_MARK_FAILED, failed)
            # Somebody urgent waits for the writer that this transaction holds (SQLite).
            wanted = self._db.writer_wanted
        if wanted:
            self._pause = (time.monotonic() - started) * YIELD_FACTOR
        return len(done), left

    async def _apply(self, conn: AsyncConnection, savepoints: Savepoints, item: _Ready) -> str:
        """Apply one message inside ``conn``'s transaction; returns its outcome.

        The handler runs in a savepoint: a business refusal or an unexpected error (raised
        on) undoes what it did and nothing else. ``on_refused`` runs outside it: if that
        fails, or the savepoint cannot be undone, the whole transaction must go (the caller
        then applies one by one).

        A stored token that does not open (tampered, or sealed with a data key this node
        lacks) raises SealingError: the message is counted as failed, never applied."""
        envelope = reopen_envelope(self._sealer.open(item.token, INBOUND_TOKEN))
        try:
            async with savepoints.savepoint():
                await self._handler(conn, envelope)
        except SavepointLost as exc:
            raise _TransactionSpoiled from exc
        except BusinessRefusal as refusal:
            if self._on_refused is not None:
                try:
                    await self._on_refused(conn, envelope, refusal)
                except Exception as exc:
                    raise _TransactionSpoiled from exc
            return f"refused:{refusal.code}"[:80]
        return "applied"

    async def _apply_alone(self, item: _Ready) -> int:
        """Apply one message in its own transaction; an error is counted on the message."""
        try:
            applied, _left = await self._apply_batch([item])
            return applied
        except Exception as exc:
            if isinstance(exc, _TransactionSpoiled) and isinstance(exc.__cause__, Exception):
                exc = exc.__cause__
            log.exception(
                "applying message failed", extra={"iss": item.iss, "xt": item.xt, "seq": item.seq}
            )
            try:
                async with self._db.write() as conn:
                    await conn.execute(
                        _MARK_FAILED,
                        [
                            {
                                "b_iss": item.iss,
                                "b_xt": item.xt,
                                "b_seq": item.seq,
                                "b_error": f"{type(exc).__name__}: {exc}"[:500],
                            }
                        ],
                    )
            except Exception:
                log.exception("counting a failed attempt failed")
            return 0


class _TransactionSpoiled(Exception):
    """Something failed outside a message's savepoint: the transaction cannot commit."""


@dataclass
class _Ready:
    iss: str
    xt: str
    seq: int
    jti: str
    #: As stored: sealed (or a legacy plaintext compact JWS).
    token: str
    #: The case's cursor as read (None: no cursor yet, so seq is 1).
    cursor: int | None


_THIS_MESSAGE = and_(
    inbound_messages.c.iss == bindparam("b_iss"),
    inbound_messages.c.xt == bindparam("b_xt"),
    inbound_messages.c.seq == bindparam("b_seq"),
)
_MARK_APPLIED = (
    update(inbound_messages)
    .where(_THIS_MESSAGE)
    .values(applied_at=bindparam("b_now"), outcome=bindparam("b_outcome"))
)
_MARK_FAILED = (
    update(inbound_messages)
    .where(_THIS_MESSAGE)
    .values(attempts=inbound_messages.c.attempts + 1, last_error=bindparam("b_error"))
)
_MOVE_CURSOR = (
    update(inbound_cursors)
    .where(
        inbound_cursors.c.iss == bindparam("b_iss"),
        inbound_cursors.c.xt == bindparam("b_xt"),
        inbound_cursors.c.next_seq == bindparam("b_seq"),
    )
    .values(next_seq=bindparam("b_next"))
)
