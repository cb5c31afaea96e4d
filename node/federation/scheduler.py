"""When each partner's sender runs: one heap of due times instead of one poller per partner.

A partner's sender (``delivery.PartnerQueue``) runs only while something may be due for it
and ends when nothing is, so a partner with nothing due costs nothing: no task awake, no
query. The wake-ups (docs/protocol.md, "Delivery scheduling"):

- commit: an outbox insert for the partner. In this process the outbox wakes the sender
  after the commit; on PostgreSQL the insert's transaction also sends ``NOTIFY`` on
  ``CHANNEL`` (payload: the partner's region code), which every replica ``LISTEN``\\ s to;
- due time: the end of the partner's backoff, or the next attempt of its waiting rows (the
  sender knows it when it goes idle), kept here in a heap;
- the partner speaks: anything stored from it (``Delivery.heard_from``);
- fallback: one query over the outbox, grouped by partner, every ``interval`` (the
  ``[federation] poll_interval``), for rows no wake-up announced (written by another
  process on SQLite, a notification lost while the listening connection was down).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from node.federation.models import outbox
from node.storage.database import Database

log = logging.getLogger(__name__)

#: The PostgreSQL notification channel of outbox inserts; the payload is the partner's region.
CHANNEL = "tongban_outbox"

#: When a pending row can next be claimed: its next attempt, or the end of another worker's
#: claim on it, whichever is later.
ROW_DUE: ColumnElement[float] = case(
    (outbox.c.claimed_until > outbox.c.next_attempt_at, outbox.c.claimed_until),
    else_=outbox.c.next_attempt_at,
)
PENDING = outbox.c.delivered_at.is_(None) & outbox.c.dead_at.is_(None)


class Scheduler:
    """Wakes partners' senders at their due times, on notifications and after a fallback scan.

    ``wake(region)`` starts (or nudges) that partner's sender. ``not_before(region)`` is the
    monotonic time before which waking it is useless (the end of its backoff; 0 when none),
    or None for a region that is no partner (rows left for a partner removed from
    partners.toml are not scheduled).
    """

    def __init__(
        self,
        db: Database,
        interval: float,
        wake: Callable[[str], None],
        not_before: Callable[[str], float | None],
    ) -> None:
        self._db = db
        self.interval = max(0.01, interval)
        self._wake = wake
        self._not_before = not_before
        # (monotonic due time, tie-breaker, region); an entry is live only while _due holds
        # the same time for its region (a later or earlier at() leaves the old one stale).
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: AsyncConnection | None = None
        self._listening: Any = None  # the asyncpg connection that LISTENs
        #: Fallback scans run; wake-ups fired from the heap; notifications received.
        self.scans = 0
        self.fired = 0
        self.notified = 0
        #: Times a connection started listening (PostgreSQL).
        self.listens = 0

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def due(self, region: str) -> float | None:
        """The pending wake-up of ``region`` (monotonic), if any."""
        return self._due.get(region)

    def at(self, region: str, when: float) -> None:
        """Wake ``region``'s sender at ``when`` (monotonic), unless a wake-up at that time or
        earlier is already pending (the sender schedules itself again if it must)."""
        current = self._due.get(region)
        if current is not None and current <= when:
            return
        self._due[region] = when
        heapq.heappush(self._heap, (when, next(self._order), region))
        if self._heap[0][2] == region:
            self._changed.set()
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [(w, next(self._order), r) for r, w in self._due.items()]
            heapq.heapify(self._heap)

    async def start(self) -> None:
        if not self._db.is_sqlite:
            await self._listen()
        self._task = asyncio.create_task(self._run(), name="delivery-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._unlisten()

    async def _run(self) -> None:
        next_scan = 0.0
        next_listen = 0.0
        while True:
            now = time.monotonic()
            if not self._db.is_sqlite and not self._is_listening() and now >= next_listen:
                # The listening connection was lost (database restart, killed backend):
                # listen again, then scan at once for what was notified meanwhile.
                next_listen = now + self.interval
                try:
                    await self._unlisten()
                    await self._listen()
                    log.info("listening for outbox notifications again")
                    next_scan = 0.0
                except Exception:
                    log.exception("LISTEN for outbox notifications failed")
            if now >= next_scan:
                next_scan = now + self.interval
                try:
                    await self.scan()
                except Exception:
                    log.exception("scanning the outbox for due partners failed")
                now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                when, _order, region = heapq.heappop(self._heap)
                if self._due.get(region) == when:
                    del self._due[region]
                    self.fired += 1
                    self._wake(region)
            deadline = min(next_scan, self._heap[0][0] if self._heap else math.inf)
            if not self._db.is_sqlite and not self._is_listening():
                deadline = min(deadline, next_listen)
            self._changed.clear()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def scan(self) -> None:
        """The fallback: one query for every partner, finding those with a row due before
        the next scan, each scheduled at its due time (not before its backoff ends)."""
        now = time.time()
        statement = (
            select(outbox.c.partner, func.min(ROW_DUE))
            .where(PENDING)
            .group_by(outbox.c.partner)
            .having(func.min(ROW_DUE) <= now + self.interval)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        self.scans += 1
        clock = time.monotonic()
        for region, due in rows:
            hold = self._not_before(region)
            if hold is None:
                continue
            self.at(region, max(hold, clock + max(0.0, float(due) - now)))

    # -- PostgreSQL: LISTEN for other processes' commits --------------------------------

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notified += 1
        self._wake(payload)

    def _is_listening(self) -> bool:
        return self._listening is not None and not self._listening.is_closed()

    async def _listen(self) -> None:
        """A connection of the pool kept aside for LISTEN (asyncpg's ``add_listener``)."""
        conn = await self._db.engine.connect()
        try:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.add_listener(CHANNEL, self._notified)
            # Lost: wake the loop, which listens again and scans.
            driver.add_termination_listener(lambda _c: self._changed.set())
        except BaseException:
            await conn.close()
            raise
        self._listener, self._listening = conn, driver
        self.listens += 1

    async def _unlisten(self) -> None:
        conn, driver = self._listener, self._listening
        self._listener = self._listening = None
        if conn is None:
            return
        if driver is not None and not driver.is_closed():
            try:
                await driver.remove_listener(CHANNEL, self._notified)
            except Exception:
                log.warning("UNLISTEN failed", exc_info=True)
            with contextlib.suppress(Exception):
                await conn.close()
            return
        # Lost: the pool must not hand the dead connection out again.
        with contextlib.suppress(Exception):
            await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()


def notify_statement(region: str) -> Any:
    """``SELECT pg_notify(CHANNEL, region)``: sent inside the transaction of an outbox insert
    on PostgreSQL, delivered to the listeners when (and only if) it commits."""
    return select(func.pg_notify(CHANNEL, region))
