"""Delivering the outbox: one queue per partner.

Each partner's queue claims a window of due rows, sends them concurrently, verifies each
receipt and records the results in one transaction. Failures back off per partner
(exponential, jittered, capped at minutes), and the backoff resets as soon as anything
arrives from that partner. One dead partner never slows the others: each has its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from node.config import FederationSettings
from node.federation.client import PartnerClient, TransportError
from node.federation.identity import NodeIdentity
from node.federation.models import outbox
from node.federation.trust import TrustStore
from node.metrics import Metrics
from node.storage.database import Database
from protocol.envelope import new_claims, parse_envelope, sign_envelope
from protocol.errors import ErrorCode, ProtocolError
from protocol.receipt import verify_receipt

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Row:
    id: int
    jti: str
    xt: str
    seq: int
    typ: str
    token: str
    digest: str
    created_at: float
    expires_at: float
    attempts: int


@dataclass
class _Result:
    row: _Row
    kind: str  # "delivered" | "dead" | "retry"
    status: int | None = None
    error: str | None = None
    receipt: str | None = None


class PartnerQueue:
    """Delivery to one partner region."""

    def __init__(self, region: str, delivery: Delivery) -> None:
        self.region = region
        self._delivery = delivery
        # Set when there may be new work: a commit in this process, or the partner spoke.
        self._wake = asyncio.Event()
        # Consecutive failed rounds; drives the backoff delay. Zero means healthy.
        self.failures = 0
        # When the current backoff ends (monotonic clock); 0 when not backing off.
        self.backoff_until = 0.0
        # For the supervisor page and /metrics: last success and last failure.
        self.last_delivered_at: float | None = None
        self.last_failure_at: float | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"deliver-{self.region}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    def heard_from(self) -> bool:
        """The partner is alive: drop the backoff. Returns True if we were backing off."""
        was_backing_off = self.failures > 0
        self.failures = 0
        self.backoff_until = 0.0
        self._wake.set()
        return was_backing_off

    async def _run(self) -> None:
        settings = self._delivery.settings
        while True:
            delay = self.backoff_until - time.monotonic()
            if delay > 0:
                await self._sleep(delay)
                continue
            try:
                rows = await self._delivery.claim(self.region)
            except Exception:
                log.exception("claiming outbox rows failed", extra={"partner": self.region})
                await self._sleep(settings.poll_interval * 4)
                continue
            if not rows:
                await self._sleep(settings.poll_interval)
                continue
            results = await asyncio.gather(*(self._delivery.deliver(self.region, r) for r in rows))
            try:
                await self._delivery.record(self.region, results)
            except Exception:
                log.exception("recording delivery results failed", extra={"partner": self.region})
            transient = [r for r in results if r.kind == "retry"]
            if any(r.kind == "delivered" for r in results):
                recovering = self.failures > 0
                self.failures = 0
                self.last_delivered_at = time.time()
                if recovering:
                    # The partner answers again: what waits for it is due now, not when each
                    # row's own backoff runs out.
                    await self._delivery.make_due(self.region)
            if transient:
                self.failures += 1
                self.last_failure_at = time.time()
                self.last_error = transient[0].error
                self.backoff_until = time.monotonic() + self._delivery.backoff(self.failures)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)


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
    ) -> None:
        self._refresh_partner_keys = refresh_partner_keys
        self._db = db
        self._identity = identity
        self._trust = trust
        self._client = client
        self._metrics = metrics
        self.settings = settings
        self.queues: dict[str, PartnerQueue] = {}

    def set_identity(self, identity: NodeIdentity) -> None:
        self._identity = identity

    def sync_partners(self) -> None:
        """Start a queue for every partner in partners.toml (call after it changed)."""
        for region in self._trust.partners:
            if region not in self.queues:
                queue = PartnerQueue(region, self)
                self.queues[region] = queue
                queue.start()

    async def stop(self) -> None:
        await asyncio.gather(*(q.stop() for q in self.queues.values()))

    def wake(self, region: str) -> None:
        queue = self.queues.get(region)
        if queue is not None:
            queue.wake()

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

    def backoff(self, failures: int) -> float:
        """Delay after ``failures`` consecutive failed rounds: exponential, capped, jittered."""
        base = min(
            self.settings.max_backoff,
            self.settings.initial_backoff * (2 ** min(failures - 1, 30)),
        )
        return base * random.uniform(0.5, 1.0)

    async def claim(self, region: str) -> list[_Row]:
        """Take up to a window of due rows for ``region``; other replicas skip them."""
        now = time.time()
        async with self._db.write() as conn:
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
                .limit(self.settings.window)
                .with_for_update(skip_locked=True)
            )
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(due.scalar_subquery()))
                .values(claimed_by=WORKER_ID, claimed_until=now + self.settings.claim_seconds)
                .returning(
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
            )
            rows = [_Row(**r._mapping) for r in result.all()]
        rows.sort(key=lambda r: r.id)
        return rows

    async def deliver(self, region: str, row: _Row) -> _Result:
        partner = self._trust.partner(region)
        if partner is None:
            return _Result(row, "retry", error="partner no longer in partners.toml")
        try:
            if row.expires_at - time.time() < self.settings.reissue_margin:
                row = await self._reissue(row)
            answer = await self._client.post_envelope(partner.url, row.token)
            if answer.status == 409 and answer.error == ErrorCode.BLOBS_MISSING:
                for sha256 in _missing(answer.extra):
                    upload = await self._client.put_blob(partner.url, region, sha256)
                    if upload.status not in (200, 201):
                        return self._refused(
                            region, row, upload.status, upload.error, upload.detail
                        )
                answer = await self._client.post_envelope(partner.url, row.token)
            if answer.status == 200:
                receipt = await self._check_receipt(region, row, answer.body)
                self._metrics.envelopes_out.labels(region, row.typ, "delivered").inc()
                return _Result(row, "delivered", status=200, receipt=receipt)
            if answer.status == 409:
                return _Result(row, "retry", status=409, error=f"{answer.error}: {answer.detail}")
            return self._refused(region, row, answer.status, answer.error, answer.detail)
        except TransportError as exc:
            self._metrics.envelopes_out.labels(region, row.typ, "unreachable").inc()
            return _Result(row, "retry", error=str(exc)[:500])
        except ProtocolError as exc:
            self._metrics.envelopes_out.labels(region, row.typ, str(exc.code)).inc()
            return _Result(row, "retry", error=f"{exc.code}: {exc.detail}"[:500])

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
        claims = parse_envelope(row.token).claims
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
        async with self._db.write() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(
                    jti=fresh["jti"],
                    token=token,
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
            token=token,
            digest=digest,
            created_at=row.created_at,
            expires_at=float(fresh["exp"]),
            attempts=row.attempts,
        )

    async def record(self, region: str, results: list[_Result]) -> None:
        now = time.time()
        async with self._db.write() as conn:
            for result in results:
                row = result.row
                if result.kind == "delivered":
                    values: dict[str, Any] = {
                        "delivered_at": now,
                        "receipt": result.receipt,
                        "last_status": 200,
                        "claimed_until": None,
                    }
                elif result.kind == "dead":
                    values = {
                        "dead_at": now,
                        "last_status": result.status,
                        "last_error": result.error,
                        "claimed_until": None,
                        "attempts": row.attempts + 1,
                    }
                else:
                    delay = self.backoff(row.attempts + 1)
                    values = {
                        "next_attempt_at": now + delay,
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
        for result in results:
            if result.kind == "delivered":
                self._metrics.delivery_latency.labels(region).observe(now - result.row.created_at)


def _missing(extra: dict[str, object]) -> list[str]:
    missing = extra.get("missing")
    if not isinstance(missing, list):
        return []
    return [m for m in missing if isinstance(m, str)][:200]
