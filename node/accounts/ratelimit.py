"""An in-memory token bucket per key, with bounded memory.

Each key (a client IP, a case number, ...) has a bucket of at most ``burst`` tokens that refills
at ``rate_per_minute``. ``hit(key)`` takes a token if there is one and says whether the action is
allowed; ``check(key)`` only looks. A bucket that has refilled completely is the same as no
bucket at all, so such buckets are dropped, and past ``max_keys`` the least recently used bucket
goes: memory stays bounded whatever keys callers invent.

The state of a ``RateLimiter`` lives in one process: several node processes behind a load
balancer each keep their own buckets, so the effective limit is up to one budget per process
(the citizens' lookups use it). Failed logins use ``LoginThrottle`` instead: the same buckets
in the database, spent atomically, so all processes of a node share one budget.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Float, case, delete, literal, select, update

from node.accounts.models import login_throttle
from node.storage.database import Database
from node.storage.upserts import conflict_insert


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by string.

    ``rate_per_minute`` tokens are added per minute up to ``burst``; a new key starts full.
    ``clock`` (monotonic seconds) can be replaced in tests.
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_minute and burst must be positive, max_keys at least 1")
        self.rate_per_second = rate_per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        #: Seconds an untouched bucket needs to refill from empty; older buckets are full.
        self._refill_seconds = self.burst / self.rate_per_second

    def __len__(self) -> int:
        """The number of keys currently remembered."""
        return len(self._buckets)

    def _tokens(self, bucket: _Bucket, now: float) -> float:
        elapsed = max(0.0, now - bucket.updated)
        return min(self.burst, bucket.tokens + elapsed * self.rate_per_second)

    def _evict(self, now: float) -> None:
        # Buckets are kept in order of last use, and they all refill at the same speed, so the
        # oldest are the fullest: drop from the front while they are full again.
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.updated < self._refill_seconds:
                break
            self._buckets.popitem(last=False)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def check(self, key: str) -> bool:
        """Whether ``hit(key)`` would be allowed now (takes nothing)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return True
        return self._tokens(bucket, self._clock()) >= 1.0

    def hit(self, key: str) -> bool:
        """Take one token for ``key``; False (and nothing taken) if the bucket is empty."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=self.burst, updated=now)
            self._buckets[key] = bucket
        else:
            bucket.tokens = self._tokens(bucket, now)
            bucket.updated = now
            self._buckets.move_to_end(key)
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        self._evict(now)
        return allowed

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may act again (0 if it may now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        missing = 1.0 - self._tokens(bucket, self._clock())
        return max(0.0, missing / self.rate_per_second)

    def reset(self, key: str) -> None:
        """Forget ``key`` (its bucket is full again)."""
        self._buckets.pop(key, None)


class LoginThrottle:
    """Failed-login budgets per client, in the database (table ``login_throttle``).

    The same token bucket as ``RateLimiter``, but every process of a node on one database
    spends one budget, and ``take`` is one conditional UPDATE: parallel requests cannot all
    pass a check before any of them is counted. A login takes a token *before* its password is
    checked and gives it back when it succeeded, so only failures use the budget up.
    """

    def __init__(self, rate_per_minute: float, burst: int) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("rate_per_minute and burst must be positive")
        self.rate_per_second = rate_per_minute / 60.0
        self.burst = float(burst)
        #: Seconds an untouched bucket needs to refill from empty; older rows are full.
        self.refill_seconds = self.burst / self.rate_per_second

    @staticmethod
    def _key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def _level(self, now: ColumnElement[float]) -> ColumnElement[float]:
        """The bucket's tokens at ``now`` (SQL over the row)."""
        table = login_throttle
        elapsed = case((table.c.updated < now, now - table.c.updated), else_=literal(0.0))
        level = table.c.tokens + elapsed * literal(self.rate_per_second, Float())
        full = literal(self.burst, Float())
        return case((level > full, full), else_=level)

    async def take(self, db: Database, key: str, *, now: float | None = None) -> float:
        """Take one token for ``key``: 0.0 if taken, else the seconds until one is there."""
        now = time.time() if now is None else now
        digest = self._key(key)
        table = login_throttle
        at = literal(now, Float())
        insert = conflict_insert(db.engine.dialect.name)(table)
        for _attempt in range(3):
            async with db.write() as conn:
                await conn.execute(
                    delete(table).where(
                        table.c.updated < now - self.refill_seconds, table.c.key != digest
                    )
                )
                fresh = insert.values(key=digest, tokens=self.burst, updated=now)
                await conn.execute(fresh.on_conflict_do_nothing(index_elements=[table.c.key]))
                level = self._level(at)
                taken = await conn.execute(
                    update(table)
                    .where(table.c.key == digest, level >= 1.0)
                    .values(
                        tokens=level - 1.0,
                        updated=case((table.c.updated < at, at), else_=table.c.updated),
                    )
                )
                if taken.rowcount == 1:
                    return 0.0
                left = (
                    await conn.execute(select(level).where(table.c.key == digest))
                ).scalar_one_or_none()
            if left is not None:
                return max(1.0, (1.0 - float(left)) / self.rate_per_second)
            # The row went between our insert and update (pruned by a neighbour): again.
        return 1.0

    async def give_back(self, db: Database, key: str) -> None:
        """Return the token a successful login took."""
        table = login_throttle
        plus_one = table.c.tokens + 1.0
        async with db.write() as conn:
            await conn.execute(
                update(table)
                .where(table.c.key == self._key(key))
                .values(tokens=case((plus_one > self.burst, self.burst), else_=plus_one))
            )
