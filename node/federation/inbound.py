"""Receiving envelopes: verify, check blobs, store durably, answer with a receipt.

Stores go through a group-commit writer: envelopes that arrive together share one
transaction (one fsync), and each request waits for the commit that holds its envelope
before its receipt leaves. A resend of a stored envelope gets the stored receipt back.

The stored token is sealed (its body holds personal data): sealed here, before the envelope
joins the writer's queue, so the writer (on SQLite the one writer connection) does no more
than it did. A resend is told apart by the stored digest and answered with the stored receipt,
neither of which is sealed, so nothing is opened on the way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from node.federation.identity import NodeIdentity
from node.federation.models import INBOUND_TOKEN, inbound_envelopes, inbound_messages, rejections
from node.federation.trust import TrustStore
from node.metrics import Metrics
from node.storage.blobs import BlobStore
from node.storage.database import Database
from node.storage.sealing import SealsValues
from node.storage.upserts import conflict_insert
from node.turns import Turns
from protocol.envelope import Envelope, parse_envelope, verify_parsed
from protocol.errors import ErrorCode, ProtocolError
from protocol.jws import ParsedJWS
from protocol.messages import MESSAGE_TYPES
from protocol.receipt import sign_receipt

log = logging.getLogger(__name__)

#: Most envelopes committed in one transaction.
MAX_BATCH = 256
#: Rejection counts are kept this long (seconds), then pruned.
REJECTION_RETENTION = 30 * 86400
#: Pruning runs with a rejection at most this often per process (seconds).
PRUNE_INTERVAL = 3600.0


@dataclass
class _Pending:
    envelope: Envelope
    receipt: str
    #: The token as stored: the compact JWS sealed for ``INBOUND_TOKEN``.
    sealed: str
    future: asyncio.Future[str]


class InboundService:
    """Everything ``POST /federation/v1/envelopes`` does, without HTTP."""

    def __init__(
        self,
        *,
        db: Database,
        identity: NodeIdentity,
        trust: TrustStore,
        blobs: BlobStore,
        metrics: Metrics,
        refresh_partner_keys: Callable[[str], Awaitable[bool]],
        on_stored: Callable[[set[str]], None],
        sealer: SealsValues,
        turns: Turns,
    ) -> None:
        self._db = db
        self._sealer = sealer
        #: Verifying, signing and sealing take turns with the loop's I/O (node/turns.py).
        self._turns = turns
        self._identity = identity
        self._trust = trust
        self._blobs = blobs
        self._metrics = metrics
        self._refresh_partner_keys = refresh_partner_keys
        self._on_stored = on_stored
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        #: When this process last pruned old rejection counts (0: not yet).
        self._pruned_at = 0.0

    def set_identity(self, identity: NodeIdentity) -> None:
        self._identity = identity

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="inbound-writer")

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def receive(self, body: bytes, *, remote: str | None) -> str:
        """Verify and store ``body``; returns the receipt (compact JWS)."""
        parsed: ParsedJWS | None = None
        try:
            await self._turns.take()
            parsed = parse_envelope(body)
            envelope = await self._verify(parsed)
            await self._check_blobs(envelope)
            receipt = sign_receipt(
                iss=self._identity.region,
                aud=envelope.iss,
                ref=envelope.jti,
                digest=envelope.digest,
                now=time.time(),
                key=self._identity.private_key,
                kid=self._identity.kid,
            )
            sealed = self._sealer.seal(envelope.compact.decode("ascii"), INBOUND_TOKEN)
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            await self._queue.put(_Pending(envelope, receipt, sealed, future))
            return await future
        except ProtocolError as exc:
            self._metrics.envelopes_in.labels(_typ_label(parsed), str(exc.code)).inc()
            await self.reject("envelopes", exc, remote=remote, parsed=parsed, size=len(body))
            raise

    async def _verify(self, parsed: ParsedJWS) -> Envelope:
        now = time.time()
        try:
            return verify_parsed(parsed, self._trust.keys, recipient=self._identity.region, now=now)
        except ProtocolError as exc:
            issuer = parsed.claims.get("iss")
            if exc.code is not ErrorCode.UNKNOWN_KID or not isinstance(issuer, str):
                raise
            if self._trust.partner(issuer) is None:
                raise
            # A partner may have rotated its key: its descriptor, signed by a key we trust,
            # announces the new one.
            if not await self._refresh_partner_keys(issuer):
                raise
            return verify_parsed(parsed, self._trust.keys, recipient=self._identity.region, now=now)

    async def _check_blobs(self, envelope: Envelope) -> None:
        missing = [
            b["sha256"] for b in envelope.blobs if await self._blobs.size(b["sha256"]) != b["size"]
        ]
        if missing:
            raise ProtocolError(
                ErrorCode.BLOBS_MISSING,
                f"{len(missing)} blob(s) not uploaded yet",
                missing=missing,
            )

    async def reject(
        self,
        endpoint: str,
        exc: ProtocolError,
        *,
        remote: str | None,
        parsed: ParsedJWS | None = None,
        size: int | None = None,
    ) -> None:
        """Log and count a refusal: what and why, never the content.

        Refusals come before authentication (anyone can cause them), so they are counted per
        (hour, source, endpoint, code) in one row, and hours older than
        ``REJECTION_RETENTION`` are pruned: the table stays small whatever is sent.
        """
        iss = jti = None
        if parsed is not None:
            iss = _short(parsed.claims.get("iss"), 6)
            jti = _short(parsed.claims.get("jti"), 36)
        log.info("refused %s: %s", endpoint, exc.code, extra={"iss": iss, "jti": jti})
        now = time.time()
        row = {
            "hour": int(now // 3600) * 3600,
            "source": rejection_source(remote, iss),
            "endpoint": endpoint,
            "code": str(exc.code)[:40],
            "count": 1,
            "first_at": now,
            "last_at": now,
            "detail": exc.detail[:300],
            "iss": iss,
            "jti": jti,
            "size": size if size is None or 0 <= size < 2**31 else None,
        }
        insert = conflict_insert(self._db.engine.dialect.name)
        statement = insert(rejections).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=["hour", "source", "endpoint", "code"],
            set_={
                "count": rejections.c.count + 1,
                "last_at": statement.excluded.last_at,
                "detail": statement.excluded.detail,
                "iss": statement.excluded.iss,
                "jti": statement.excluded.jti,
                "size": statement.excluded.size,
            },
        )
        try:
            async with self._db.write() as conn:
                await conn.execute(statement)
                if now - self._pruned_at >= PRUNE_INTERVAL:
                    self._pruned_at = now
                    await conn.execute(
                        rejections.delete().where(rejections.c.hour < now - REJECTION_RETENTION)
                    )
        except Exception:  # the refusal stands even if its count cannot be written
            log.exception("could not record a rejection")

    # -- group commit -----------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._commit(batch)
            except (IntegrityError, sqlite3.IntegrityError):
                # Another process stored one of these at the same moment: settle one by one.
                results = []
                for item in batch:
                    try:
                        results.extend(await self._commit([item]))
                    except Exception as exc:  # pragma: no cover - database down
                        results.append(exc)
            except Exception as exc:
                log.exception("storing inbound envelopes failed")
                results = [exc] * len(batch)
            issuers: set[str] = set()
            for item, result in zip(batch, results, strict=True):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
                    issuers.add(item.envelope.iss)
            if issuers:
                self._on_stored(issuers)

    async def _commit(self, batch: list[_Pending]) -> list[str | BaseException]:
        """Store ``batch`` in one transaction; returns a receipt or an error per item."""
        if self._db.is_sqlite:
            results, fresh = await self._db.run_write(
                lambda c: _commit_sqlite(c, batch), urgent=True
            )
        else:
            async with self._db.write() as conn:
                jtis = list({p.envelope.jti for p in batch})
                stored = {
                    row.jti: (row.digest, row.receipt)
                    for row in (
                        await conn.execute(
                            select(
                                inbound_envelopes.c.jti,
                                inbound_envelopes.c.digest,
                                inbound_envelopes.c.receipt,
                            ).where(inbound_envelopes.c.jti.in_(jtis))
                        )
                    ).all()
                }
                results, fresh = _sort_out(batch, stored)
                if fresh:
                    await self._insert(conn, list(fresh.values()))
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, str):
                label = "stored" if fresh.get(item.envelope.jti) is item else "resent"
                if label == "resent":
                    # Rare (a sender that lost our receipt: a crash, a timeout); worth a line.
                    log.info(
                        "envelope received again",
                        extra={"iss": item.envelope.iss, "jti": item.envelope.jti},
                    )
                self._metrics.envelopes_in.labels(item.envelope.typ, label).inc()
        return results

    async def _insert(self, conn: AsyncConnection, items: list[_Pending]) -> None:
        now = time.time()
        insert = conflict_insert(conn.dialect.name)
        await conn.execute(
            insert(inbound_messages).on_conflict_do_nothing(),
            [
                {
                    "iss": p.envelope.iss,
                    "xt": p.envelope.xt,
                    "seq": p.envelope.seq,
                    "jti": p.envelope.jti,
                    "typ": p.envelope.typ,
                    "received_at": now,
                    "attempts": 0,
                }
                for p in items
            ],
        )
        keys = [(p.envelope.iss, p.envelope.xt, p.envelope.seq) for p in items]
        owners = {
            (r.iss, r.xt, r.seq): r.jti
            for r in (
                await conn.execute(
                    select(
                        inbound_messages.c.iss,
                        inbound_messages.c.xt,
                        inbound_messages.c.seq,
                        inbound_messages.c.jti,
                    ).where(
                        tuple_(
                            inbound_messages.c.iss, inbound_messages.c.xt, inbound_messages.c.seq
                        ).in_(keys)
                    )
                )
            ).all()
        }
        await conn.execute(
            inbound_envelopes.insert(),
            [
                {
                    "jti": p.envelope.jti,
                    "iss": p.envelope.iss,
                    "xt": p.envelope.xt,
                    "seq": p.envelope.seq,
                    "typ": p.envelope.typ,
                    "kid": p.envelope.kid,
                    "digest": p.envelope.digest,
                    "token": p.sealed,
                    "receipt": p.receipt,
                    "received_at": now,
                    "duplicate": owners.get(key) != p.envelope.jti,
                }
                for p, key in zip(items, keys, strict=True)
            ],
        )


def _sort_out(
    batch: list[_Pending], stored: dict[str, tuple[str, str]]
) -> tuple[list[str | BaseException], dict[str, _Pending]]:
    """Per item: the stored receipt of a resend, ``jti_reused`` for a jti stored with other
    content, or its own receipt; and the items to insert (first of each new jti)."""
    results: list[str | BaseException] = []
    fresh: dict[str, _Pending] = {}
    for item in batch:
        env = item.envelope
        known = stored.get(env.jti)
        first = fresh.get(env.jti)
        if known is not None:
            results.append(_same_or_reused(env, known[0], known[1]))
        elif first is not None:
            results.append(_same_or_reused(env, first.envelope.digest, first.receipt))
        else:
            fresh[env.jti] = item
            results.append(item.receipt)
    return results, fresh


def _commit_sqlite(
    c: sqlite3.Connection, batch: list[_Pending]
) -> tuple[list[str | BaseException], dict[str, _Pending]]:
    """``_commit`` on SQLite, in the writer's thread: the same statements as
    ``InboundService._insert``, as plain SQL."""
    jtis = list({p.envelope.jti for p in batch})
    stored = {
        jti: (digest, receipt)
        for jti, digest, receipt in c.execute(
            "SELECT jti, digest, receipt FROM inbound_envelopes"
            f" WHERE jti IN ({','.join('?' * len(jtis))})",
            jtis,
        )
    }
    results, fresh = _sort_out(batch, stored)
    if not fresh:
        return results, fresh
    now = time.time()
    pending = list(fresh.values())
    items = [p.envelope for p in pending]
    c.executemany(
        "INSERT INTO inbound_messages (iss, xt, seq, jti, typ, received_at, attempts)"
        " VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
        [(e.iss, e.xt, e.seq, e.jti, e.typ, now) for e in items],
    )
    owners: dict[tuple[str, str, int], str] = {}
    for start in range(0, len(items), 100):
        part = items[start : start + 100]
        for iss, xt, seq, jti in c.execute(
            "SELECT iss, xt, seq, jti FROM inbound_messages WHERE (iss, xt, seq) IN"
            f" (VALUES {','.join(['(?, ?, ?)'] * len(part))})",
            [v for e in part for v in (e.iss, e.xt, e.seq)],
        ):
            owners[(iss, xt, seq)] = jti
    c.executemany(
        "INSERT INTO inbound_envelopes (jti, iss, xt, seq, typ, kid, digest, token, receipt,"
        " received_at, duplicate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.jti,
                e.iss,
                e.xt,
                e.seq,
                e.typ,
                e.kid,
                e.digest,
                p.sealed,
                p.receipt,
                now,
                int(owners.get((e.iss, e.xt, e.seq)) != e.jti),
            )
            for p, e in zip(pending, items, strict=True)
        ],
    )
    return results, fresh


def _same_or_reused(env: Envelope, digest: str, receipt: str) -> str | BaseException:
    if digest == env.digest:
        return receipt
    return ProtocolError(ErrorCode.JTI_REUSED, "this jti was already used for other content")


def _typ_label(parsed: ParsedJWS | None) -> str:
    if parsed is None:
        return "unknown"
    typ = parsed.claims.get("typ")
    return typ if typ in MESSAGE_TYPES else "unknown"


def rejection_source(remote: str | None, iss: str | None) -> str:
    """Who a refusal is counted against: the client address (an IPv6 client by its /64, which
    one subscriber gets whole), else the claimed issuer, else nobody known."""
    if remote:
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return remote[:64]
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        return str(address)
    return f"iss:{iss}" if iss else ""


def _short(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None
