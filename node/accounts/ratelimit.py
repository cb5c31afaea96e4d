"""An in-memory token bucket per key, with bounded memory.

Each key (a client IP, a case number, ...) has a bucket of at most ``burst`` tokens that refills
at ``rate_per_minute``. ``hit(key)`` takes a token if there is one and says whether the action is
allowed; ``check(key)`` only looks. A bucket that has refilled completely is the same as no
bucket at all, so such buckets are dropped, and past ``max_keys`` the least recently used bucket
goes: memory stays bounded whatever keys callers invent.

The state lives in one process. Several node processes behind a load balancer each keep their
own buckets, so the effective limit is up to one budget per process; the account lockout (in
the database) is what is shared.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


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
