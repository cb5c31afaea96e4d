"""Delivering the outbox: one queue per partner.

Each partner's queue keeps up to a window of envelopes on the wire (a sliding window: as
sends finish, their results are recorded and more due rows claimed, in one transaction) and
verifies each receipt. Failures back off per partner
(exponential, jittered, capped at minutes), and the backoff resets as soon as anything
arrives from that partner. One dead partner never slows the others: each has its own
sender task while it has work, and none at all while it has none (the scheduler,
node/federation/scheduler.py, starts a sender when something falls due for its partner).

Outbox tokens are stored sealed: claimed rows carry them as stored, and each send opens its
row's token just before it goes on the wire (not in the claiming transaction, which on SQLite
holds the one writer). A token that does not open is never sent: the row waits (``held``: its
own backoff, a loud log line, ``last_error``) without counting as a failure of the partner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.config import FederationSettings
from node.federation.client import PartnerClient, TransportError
from node.federation.identity import NodeIdentity
from node.federation.models import OUTBOX_TOKEN, outbox
from node.federation.scheduler import PENDING, ROW_DUE, Scheduler
from node.federation.trust import TrustStore
from node.metrics import Metrics
from node.storage.database import Database
from node.storage.sealing import SealingError, SealsValues
from node.turns import Turns
from node.waiting import wait_event
from protocol.envelope import new_claims, parse_envelope, sign_envelope
from protocol.errors import ErrorCode, ProtocolError
from protocol.receipt import verify_receipt

log = logging.getLogger(__name__)

#: Who claimed an outbox row: host, process id and a random part (replicas on one database
#: tell their claims apart; an admin sees which process holds a row).
WORKER_ID = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
#: Longest claim lease, seconds (``claim_seconds`` may shorten it).
LEASE_SECONDS = 10.0


@dataclass
class _Row:
    id: int
    jti: str
    xt: str
    seq: int
    typ: str
    #: As stored: sealed (or a legacy plaintext compact JWS).
    token: str
    digest: str
    created_at: float
    expires_at: float
    attempts: int


@dataclass
class _Result:
    row: _Row
    # "delivered" | "dead" | "retry" | "held" (a retry that is no fault of the partner: the
    # row's token does not open here)
    kind: str
    status: int | None = None
    error: str | None = None
    receipt: str | None = None


class PartnerQueue:
    """Delivery to one partner region: a sliding window of sends, run only while needed.

    Up to ``window`` envelopes are on the wire at once. As sends finish, their results are
    recorded and more rows claimed in one transaction, so the window stays full without a
    barrier between rounds. Claimed rows carry a short lease (``claimed_until``) that the
    worker renews while they are in flight: another replica never takes a row this process
    is sending, and a crashed process's rows are free again within one lease.

    The sender (one task) runs only while there is something to do for the partner: it is
    started by a wake-up (``wake``: a commit for this partner, a due time from the
    scheduler, the partner speaking) and ends when nothing it can claim is left, telling
    the scheduler when its next row or its backoff falls due. Idle, it costs nothing.
    """

    def __init__(self, region: str, delivery: Delivery) -> None:
        self.region = region
        self._delivery = delivery
        # Set when there may be new work while the sender runs: it looks again before ending.
        self._wake = asyncio.Event()
        # Set when a send finishes.
        self._done = asyncio.Event()
        # Consecutive failed episodes; drives the backoff delay. Zero means healthy.
        self.failures = 0
        # When the current backoff ends (monotonic clock); 0 when not backing off.
        self.backoff_until = 0.0
        # A send failed: claim nothing more, and back off once what is on the wire is back.
        self._pausing = False
        # For the supervisor page and /metrics: last success and last failure.
        self.last_delivered_at: float | None = None
        self.last_failure_at: float | None = None
        self.last_error: str | None = None
        #: Times the sender was started (tests prove a wake-up reaches only its partner).
        self.runs = 0
        self._task: asyncio.Task[None] | None = None
        self._in_flight: dict[int, asyncio.Task[_Result]] = {}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in self._in_flight.values():
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        self._in_flight.clear()

    def wake(self) -> None:
        """There may be something to send: start the sender (or have the running one look
        again). While backing off, only make sure the scheduler wakes it when that ends."""
        if self.running:
            self._wake.set()
            return
        if self.backoff_until > time.monotonic():
            self._delivery.scheduler.at(self.region, self.backoff_until)
            return
        if self._delivery.stopped:
            return
        self.runs += 1
        self._wake.clear()
        self._task = asyncio.create_task(self._run(), name=f"deliver-{self.region}")

    def not_before(self) -> float:
        """Monotonic time before which waking the sender is useless (its backoff's end)."""
        return 0.0 if self.running else self.backoff_until

    def heard_from(self) -> bool:
        """The partner is alive: drop the backoff. Returns True if we were backing off."""
        was_backing_off = self.failures > 0
        self.failures = 0
        self.backoff_until = 0.0
        self._pausing = False
        self.wake()
        return was_backing_off

    async def _run(self) -> None:
        try:
            await self._send_while_due()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery to a partner failed", extra={"partner": self.region})
            self._delivery.scheduler.at(
                self.region, time.monotonic() + self._delivery.settings.poll_interval * 4
            )

    async def _send_while_due(self) -> None:
        delivery = self._delivery
        settings = delivery.settings
        window = max(1, settings.window)
        # Claim when at least this many slots are free (fewer, larger claims), or when idle.
        min_claim = max(1, window // 4)
        lease = delivery.lease
        renewed = time.monotonic()
        # Results of finished sends not recorded yet.
        unrecorded: list[_Result] = []
        while True:
            for row_id in [i for i, t in self._in_flight.items() if t.done()]:
                unrecorded.append(self._in_flight.pop(row_id).result())
            results = unrecorded
            now = time.monotonic()
            if self._pausing and not self._in_flight and not results:
                # Everything on the wire came back: back off from now.
                self._pausing = False
                self.backoff_until = time.monotonic() + delivery.backoff(self.failures)
            delay = self.backoff_until - now
            free = window - len(self._in_flight)
            want = 0
            if delay <= 0 and not self._pausing and (free >= min_claim or not self._in_flight):
                want = free
            renew = [] if now - renewed < lease / 3 else list(self._in_flight)
            rows: list[_Row] = []
            # Nothing left on the wire after this pass unless it claims something: ask when
            # the partner's next row falls due, in the same transaction.
            probe = not self._in_flight
            next_due: float | None = None
            if results or want or renew:
                # Anything committed before this transaction is seen by its claim.
                self._wake.clear()
                try:
                    rows, next_due = await delivery.settle(
                        self.region, results, want, renew, probe=probe
                    )
                except Exception:
                    # The results stay unrecorded and are recorded on the next pass.
                    log.exception(
                        "recording or claiming outbox rows failed", extra={"partner": self.region}
                    )
                    await self._sleep(settings.poll_interval * 4)
                    continue
                unrecorded = []
                if renew:
                    renewed = now
                self._after(results)
            for row in rows:
                task = asyncio.create_task(delivery.send(self.region, row))
                task.add_done_callback(lambda _t: self._done.set())
                self._in_flight[row.id] = task
            if rows or (self._pausing and not self._in_flight):
                continue
            if self._in_flight:
                if any(t.done() for t in self._in_flight.values()):
                    continue
                # Wait for a send to finish (or for the time to renew the lease).
                self._done.clear()
                await wait_event(self._done, lease / 3)
                continue
            if self._may_stop(next_due):
                return

    def _may_stop(self, next_due: float | None) -> bool:
        """Nothing on the wire and nothing claimed: whether the sender may end now, having
        told the scheduler when to wake it (False: it was woken meanwhile, look again).
        ``next_due``: when the partner's next waiting row falls due (UNIX time), if any."""
        scheduler = self._delivery.scheduler
        if self.backoff_until > time.monotonic():
            # Backing off: the scheduler wakes the sender when the backoff ends.
            scheduler.at(self.region, self.backoff_until)
            return True
        if self._wake.is_set():
            # Woken while claiming (a commit the claim may not have seen), or the partner
            # spoke during a backoff: look again.
            return False
        if next_due is not None:
            # Rows wait (their own retry time, or another worker's claim): wake then. Never
            # sooner than a moment from now (a row another replica is claiming this instant
            # looks due).
            soon = time.monotonic() + min(0.05, self._delivery.settings.poll_interval)
            scheduler.at(self.region, max(soon, time.monotonic() + next_due - time.time()))
        return True

    def _after(self, results: list[_Result]) -> None:
        """Health bookkeeping once ``results`` are recorded."""
        if not results:
            return
        if any(r.kind == "delivered" for r in results):
            self.last_delivered_at = time.time()
            if self.failures > 0 and not self._pausing:
                # The partner answers again: what waits for it is due now, not when each
                # row's own backoff runs out.
                self.failures = 0
                self._delivery.keep(asyncio.create_task(self._make_due()))
        transient = [r for r in results if r.kind == "retry"]
        if transient:
            self.last_failure_at = time.time()
            self.last_error = transient[0].error
            if not self._pausing:
                # One failure episode: stop claiming, count it once, back off when what is
                # on the wire has come back.
                self._pausing = True
                self.failures += 1

    async def _make_due(self) -> None:
        try:
            await self._delivery.make_due(self.region)
        except Exception:
            log.exception("making waiting rows due failed", extra={"partner": self.region})

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        await wait_event(self._wake, seconds)


class Delivery:
    def __init__(
        self,
        *,
        db: Database,
        identity: NodeIdentity,
        trust: TrustStore,
        client: PartnerClient,
        metrics: Metrics,
        settings: FederationSettings,
        refresh_partner_keys: Callable[[str], Awaitable[bool]],
        sealer: SealsValues,
        turns: Turns,
    ) -> None:
        self._refresh_partner_keys = refresh_partner_keys
        self._sealer = sealer
        #: Checking receipts takes turns with the loop's I/O (node/turns.py).
        self._turns = turns
        self._db = db
        self._identity = identity
        self._trust = trust
        self._client = client
        self._metrics = metrics
        self.settings = settings
        self.queues: dict[str, PartnerQueue] = {}
        #: Settle transactions (the per-partner outbox statements) run, by partner.
        self.settles: dict[str, int] = {}
        #: How long a claim lasts without renewal, seconds: the worker renews the rows it is
        #: sending every third of it, so a crashed process's rows are free again that soon.
        self.lease = max(1.0, min(settings.claim_seconds, LEASE_SECONDS))
        # Short-lived tasks (make_due after a recovery) kept referenced until done.
        self._background: set[asyncio.Task[None]] = set()
        #: Wakes each partner's sender when something falls due for it (no polling per
        #: partner: node/federation/scheduler.py).
        self.scheduler = Scheduler(db, settings.poll_interval, self.wake, self._not_before)
        self.stopped = False

    def keep(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def set_identity(self, identity: NodeIdentity) -> None:
        self._identity = identity

    def sync_partners(self) -> None:
        """A queue for every partner in partners.toml (call after it changed). A new queue
        starts idle: the scheduler's next scan wakes it if rows wait for it."""
        for region in self._trust.partners:
            if region not in self.queues:
                self.queues[region] = PartnerQueue(region, self)

    async def start(self) -> None:
        """Queues for the partners, and the scheduler (its first scan finds what waits)."""
        self.stopped = False
        self.sync_partners()
        await self.scheduler.start()

    async def stop(self) -> None:
        self.stopped = True
        await self.scheduler.stop()
        await asyncio.gather(*(q.stop() for q in self.queues.values()))

    def workers(self) -> dict[str, asyncio.Task[None] | None]:
        """The long-running tasks of delivery, by name (for /readyz): the scheduler only;
        partners' senders run when needed and are not workers."""
        return {"delivery": self.scheduler.task}

    def wake(self, region: str) -> None:
        """Something may be due for ``region`` (a commit, a notification, a due time)."""
        queue = self.queues.get(region)
        if queue is not None:
            queue.wake()

    def _not_before(self, region: str) -> float | None:
        queue = self.queues.get(region)
        return None if queue is None else queue.not_before()

    async def heard_from(self, region: str) -> None:
        """Anything arrived from ``region``: retry what waits for it now, not at backoff's end."""
        queue = self.queues.get(region)
        if queue is None or not queue.heard_from():
            return
        await self.make_due(region)

    async def make_due(self, region: str) -> None:
        """Every waiting row for ``region`` becomes due at once."""
        now = time.time()
        async with self._db.write() as conn:
            await conn.execute(
                update(outbox)
                .where(
                    outbox.c.partner == region,
                    outbox.c.delivered_at.is_(None),
                    outbox.c.dead_at.is_(None),
                    outbox.c.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )
        self.wake(region)

    def backoff(self, failures: int) -> float:
        """Delay after ``failures`` consecutive failed rounds: exponential, capped, jittered."""
        base = min(
            self.settings.max_backoff,
            self.settings.initial_backoff * (2 ** min(failures - 1, 30)),
        )
        return base * random.uniform(0.5, 1.0)

    async def settle(
        self,
        region: str,
        results: list[_Result],
        claim: int,
        renew: list[int],
        *,
        probe: bool = False,
    ) -> tuple[list[_Row], float | None]:
        """One transaction: record ``results``, renew the lease of the rows still on the wire
        (``renew``, ids) and claim up to ``claim`` due rows for ``region``.

        With ``probe``, when nothing was claimed, also returns when the partner's next
        waiting row falls due (UNIX time; None when none waits): the sender goes idle and
        asks the scheduler to wake it then."""
        now = time.time()
        self.settles[region] = self.settles.get(region, 0) + 1
        if self._db.is_sqlite:
            rows, next_due = await self._db.run_write(
                lambda c: self._settle_sqlite(c, region, results, claim, renew, now, probe),
                background=True,
            )
        else:
            rows, next_due = await self._settle_async(region, results, claim, renew, now, probe)
        for result in results:
            if result.kind == "delivered":
                self._metrics.delivery_latency.labels(region).observe(now - result.row.created_at)
        return rows, next_due

    async def _settle_async(
        self,
        region: str,
        results: list[_Result],
        claim: int,
        renew: list[int],
        now: float,
        probe: bool,
    ) -> tuple[list[_Row], float | None]:
        rows: list[_Row] = []
        next_due: float | None = None
        async with self._db.write(background=True) as conn:
            if results:
                await self._record(conn, results, now)
            if renew:
                await conn.execute(
                    update(outbox)
                    .where(
                        outbox.c.id.in_(renew),
                        outbox.c.claimed_by == WORKER_ID,
                        outbox.c.delivered_at.is_(None),
                    )
                    .values(claimed_until=now + self.lease)
                )
            if claim > 0:
                rows = await self._claim(conn, region, claim, now)
            if probe and not rows:
                found = (
                    await conn.execute(
                        select(func.min(ROW_DUE)).where(outbox.c.partner == region, PENDING)
                    )
                ).scalar()
                next_due = None if found is None else float(found)
        return rows, next_due

    def _settle_sqlite(
        self,
        c: sqlite3.Connection,
        region: str,
        results: list[_Result],
        claim: int,
        renew: list[int],
        now: float,
        probe: bool,
    ) -> tuple[list[_Row], float | None]:
        """``settle`` on SQLite, in the writer's thread (the same statements as on
        PostgreSQL, less FOR UPDATE: the SQLite writer lock serializes writers)."""
        delivered = [
            (now, r.receipt, r.row.id, WORKER_ID) for r in results if r.kind == "delivered"
        ]
        if delivered:
            c.executemany(
                "UPDATE outbox SET delivered_at = ?, receipt = ?, last_status = 200,"
                " claimed_until = NULL WHERE id = ? AND claimed_by = ?",
                delivered,
            )
        for result in results:
            row = result.row
            if result.kind == "dead":
                c.execute(
                    "UPDATE outbox SET dead_at = ?, last_status = ?, last_error = ?,"
                    " claimed_until = NULL, attempts = ? WHERE id = ? AND claimed_by = ?",
                    (now, result.status, result.error, row.attempts + 1, row.id, WORKER_ID),
                )
            elif result.kind in ("retry", "held"):
                c.execute(
                    "UPDATE outbox SET next_attempt_at = ?, last_status = ?, last_error = ?,"
                    " claimed_until = NULL, attempts = ? WHERE id = ? AND claimed_by = ?",
                    (
                        now + self.backoff(row.attempts + 1),
                        result.status,
                        result.error,
                        row.attempts + 1,
                        row.id,
                        WORKER_ID,
                    ),
                )
        if renew:
            marks = ",".join("?" * len(renew))
            c.execute(
                "UPDATE outbox SET claimed_until = ? WHERE claimed_by = ?"
                f" AND delivered_at IS NULL AND id IN ({marks})",
                (now + self.lease, WORKER_ID, *renew),
            )
        found = []
        if claim > 0:
            found = c.execute(
                "UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE id IN ("
                " SELECT id FROM outbox WHERE partner = ? AND delivered_at IS NULL"
                " AND dead_at IS NULL AND next_attempt_at <= ?"
                " AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY id LIMIT ?)"
                " RETURNING id, jti, xt, seq, typ, token, digest, created_at, expires_at, attempts",
                (WORKER_ID, now + self.lease, region, now, now, claim),
            ).fetchall()
        rows = [_Row(*r) for r in found]
        rows.sort(key=lambda r: r.id)
        next_due: float | None = None
        if probe and not rows:
            (due,) = c.execute(
                "SELECT MIN(CASE WHEN claimed_until > next_attempt_at THEN claimed_until"
                " ELSE next_attempt_at END) FROM outbox WHERE partner = ?"
                " AND delivered_at IS NULL AND dead_at IS NULL",
                (region,),
            ).fetchone()
            next_due = None if due is None else float(due)
        return rows, next_due

    async def claim(self, region: str, limit: int | None = None) -> list[_Row]:
        """Take up to ``limit`` (a window) of due rows for ``region``; other replicas skip
        them."""
        rows, _next = await self.settle(region, [], limit or self.settings.window, [])
        return rows

    async def _claim(
        self, conn: AsyncConnection, region: str, limit: int, now: float
    ) -> list[_Row]:
        due = (
            select(outbox.c.id)
            .where(
                outbox.c.partner == region,
                outbox.c.delivered_at.is_(None),
                outbox.c.dead_at.is_(None),
                outbox.c.next_attempt_at <= now,
                or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
            )
            .order_by(outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(due.scalar_subquery()))
            .values(claimed_by=WORKER_ID, claimed_until=now + self.lease)
            .returning(*_ROW_COLUMNS)
        )
        rows = [_Row(*r) for r in result.all()]
        rows.sort(key=lambda r: r.id)
        return rows

    async def send(self, region: str, row: _Row) -> _Result:
        """``deliver``, with any unexpected error turned into a retry (logged)."""
        try:
            return await self.deliver(region, row)
        except Exception as exc:
            log.exception(
                "delivering an envelope failed", extra={"partner": region, "jti": row.jti}
            )
            return _Result(row, "retry", error=f"{type(exc).__name__}: {exc}"[:500])

    async def deliver(self, region: str, row: _Row) -> _Result:
        partner = self._trust.partner(region)
        if partner is None:
            return _Result(row, "retry", error="partner no longer in partners.toml")
        try:
            if row.expires_at - time.time() < self.settings.reissue_margin:
                row = await self._reissue(row)
            token = self._sealer.open(row.token, OUTBOX_TOKEN)
            answer = await self._client.post_envelope(partner.url, token)
            if answer.status == 409 and answer.error == ErrorCode.BLOBS_MISSING:
                for sha256 in _missing(answer.extra):
                    upload = await self._client.put_blob(partner.url, region, sha256)
                    if upload.status not in (200, 201):
                        return self._refused(
                            region, row, upload.status, upload.error, upload.detail
                        )
                answer = await self._client.post_envelope(partner.url, token)
            if answer.status == 200:
                await self._turns.take()
                receipt = await self._check_receipt(region, row, answer.body)
                self._metrics.envelopes_out.labels(region, row.typ, "delivered").inc()
                return _Result(row, "delivered", status=200, receipt=receipt)
            if answer.status == 409:
                return _Result(row, "retry", status=409, error=f"{answer.error}: {answer.detail}")
            return self._refused(region, row, answer.status, answer.error, answer.detail)
        except SealingError as exc:
            return self._held(region, row, exc)
        except TransportError as exc:
            self._metrics.envelopes_out.labels(region, row.typ, "unreachable").inc()
            return _Result(row, "retry", error=str(exc)[:500])
        except ProtocolError as exc:
            self._metrics.envelopes_out.labels(region, row.typ, str(exc.code)).inc()
            return _Result(row, "retry", error=f"{exc.code}: {exc.detail}"[:500])

    def _held(self, region: str, row: _Row, exc: SealingError) -> _Result:
        """A stored token that does not open (tampered, or sealed with a data key this node
        lacks: restored without ``secrets/data-keys.json``?) is never sent. Loud, and retried
        on the row's own backoff (the keys file may come back), without holding back the
        partner's other rows."""
        self._metrics.envelopes_out.labels(region, row.typ, "sealing_error").inc()
        log.error(
            "outbox token does not open; not sent",
            extra={"partner": region, "jti": row.jti, "error": str(exc)},
        )
        return _Result(row, "held", error=f"SealingError: {exc}"[:500])

    def _refused(
        self, region: str, row: _Row, status: int, error: str | None, detail: str
    ) -> _Result:
        """A 4xx other than 409 is final: a dead letter for an admin, never retried."""
        self._metrics.envelopes_out.labels(region, row.typ, error or f"http_{status}").inc()
        log.warning(
            "partner refused envelope",
            extra={"partner": region, "jti": row.jti, "status": status, "error": error},
        )
        return _Result(row, "dead", status=status, error=f"{error}: {detail}"[:500])

    async def _check_receipt(self, region: str, row: _Row, body: bytes) -> str:
        try:
            verify_receipt(
                body,
                self._trust.keys,
                sender=self._identity.region,
                receiver=region,
                ref=row.jti,
                digest=row.digest,
            )
        except ProtocolError:
            # Perhaps the partner rotated its key: learn it from its descriptor and look again.
            if not await self._refresh_partner_keys(region):
                raise
            verify_receipt(
                body,
                self._trust.keys,
                sender=self._identity.region,
                receiver=region,
                ref=row.jti,
                digest=row.digest,
            )
        return body.decode("ascii")

    async def _reissue(self, row: _Row) -> _Row:
        """Sign the message again with a new jti, same xt and seq (it was about to expire)."""
        claims = parse_envelope(self._sealer.open(row.token, OUTBOX_TOKEN)).claims
        fresh = new_claims(
            iss=self._identity.region,
            aud=claims["aud"],
            typ=claims["typ"],
            xt=claims["xt"],
            seq=claims["seq"],
            body=claims["body"],
            blobs=claims["blobs"],
            now=time.time(),
        )
        token = sign_envelope(fresh, self._identity.private_key, self._identity.kid)
        digest = parse_envelope(token).digest
        sealed = self._sealer.seal(token, OUTBOX_TOKEN)
        async with self._db.write() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(
                    jti=fresh["jti"],
                    token=sealed,
                    digest=digest,
                    expires_at=float(fresh["exp"]),
                    reissued_from=func.trim(
                        func.coalesce(outbox.c.reissued_from, "") + " " + row.jti
                    ),
                )
            )
        log.info("re-issued envelope", extra={"old_jti": row.jti, "jti": fresh["jti"]})
        return _Row(
            id=row.id,
            jti=fresh["jti"],
            xt=row.xt,
            seq=row.seq,
            typ=row.typ,
            token=sealed,
            digest=digest,
            created_at=row.created_at,
            expires_at=float(fresh["exp"]),
            attempts=row.attempts,
        )

    async def record(self, region: str, results: list[_Result]) -> None:
        """Record ``results`` of this worker's sends in one transaction."""
        await self.settle(region, results, 0, [])

    async def _record(self, conn: AsyncConnection, results: list[_Result], now: float) -> None:
        # Delivered rows (nearly all of them): one executemany.
        delivered = [
            {"b_id": r.row.id, "b_receipt": r.receipt} for r in results if r.kind == "delivered"
        ]
        if delivered:
            await conn.execute(_RECORD_DELIVERED, [{**d, "b_now": now} for d in delivered])
        for result in results:
            row = result.row
            if result.kind == "delivered":
                continue
            if result.kind == "dead":
                values: dict[str, Any] = {
                    "dead_at": now,
                    "last_status": result.status,
                    "last_error": result.error,
                    "claimed_until": None,
                    "attempts": row.attempts + 1,
                }
            else:
                values = {
                    "next_attempt_at": now + self.backoff(row.attempts + 1),
                    "last_status": result.status,
                    "last_error": result.error,
                    "claimed_until": None,
                    "attempts": row.attempts + 1,
                }
            await conn.execute(
                update(outbox)
                .where(and_(outbox.c.id == row.id, outbox.c.claimed_by == WORKER_ID))
                .values(**values)
            )


_ROW_COLUMNS = (
    outbox.c.id,
    outbox.c.jti,
    outbox.c.xt,
    outbox.c.seq,
    outbox.c.typ,
    outbox.c.token,
    outbox.c.digest,
    outbox.c.created_at,
    outbox.c.expires_at,
    outbox.c.attempts,
)

#: Marks one delivered row (executemany: b_id, b_receipt, b_now). Only the claiming worker's
#: result counts: if its lease ran out and another took the row, that one records it.
_RECORD_DELIVERED = (
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"), outbox.c.claimed_by == WORKER_ID)
    .values(
        delivered_at=bindparam("b_now"),
        receipt=bindparam("b_receipt"),
        last_status=200,
        claimed_until=None,
    )
)


def _missing(extra: dict[str, object]) -> list[str]:
    missing = extra.get("missing")
    if not isinstance(missing, list):
        return []
    return [m for m in missing if isinstance(m, str)][:200]
