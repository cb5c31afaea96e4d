"""When each partner's catalogue is fetched next (the refresher's plan; no I/O, the caller passes
the time).

At national size a node has thousands of partners. The plan never lets them fall due together:

- A partner seen for the first time (or whose last check is older than the interval) gets a
  start slot: slots are ``1 / start_rate`` seconds apart, so a start with 3,000 partners fetches
  at most ``start_rate`` of them per second (at 10/s: all within 5 minutes), in random order.
- A partner checked before (the time is kept in ``partner_catalogs.checked_at``) is due one
  interval after that check, with jitter, so a restart fetches nothing early. One never
  checked whose last attempt failed (``attempted_at``) is due when its first retry would
  have been, if that is still to come.
- After a check (a catalogue stored or 304 Not Modified) it is due ``interval × (1 ± jitter)``
  later; after a failure ``retry × 2^(failures-1)`` later (capped at the interval), with jitter.
  A partner that has never answered (no check known, none this run) backs off from
  ``retry_unanswered`` instead: it is more likely not up yet or misconfigured than briefly
  away, and with thousands of such partners quick retries were half the attempts of a start.
  Each partner backs off on its own.

The plan is a heap of due times (stale entries are skipped when they reach the top), so that
what the refresher asks after each fetch — the first partner due, when the next one is due —
costs O(log n), not a pass over every partner: with 3,000 partners and a fetch ending 30 times
a second, those passes were most of the refresher's cost (bench/README.md, bench.partners).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Mapping

#: Share of the interval by which a partner's next fetch moves, either way.
DEFAULT_JITTER = 0.1
#: Partners fetched at most per second while the plan spreads their first fetches: 3,000
#: partners within 5 minutes (docs/catalog.md §4 says why not faster).
DEFAULT_START_RATE = 10.0


class RefreshSchedule:
    def __init__(
        self,
        interval: float,
        retry: float,
        *,
        jitter: float = DEFAULT_JITTER,
        start_rate: float = DEFAULT_START_RATE,
        retry_unanswered: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= jitter < 1 or start_rate <= 0:
            raise ValueError("jitter must be in [0, 1) and start_rate positive")
        self.interval = interval
        self.retry = retry
        #: First retry of a partner that has never answered (default: ``retry``).
        self.retry_unanswered = retry if retry_unanswered is None else retry_unanswered
        self.jitter = jitter
        self.start_rate = start_rate
        self._rng = rng or random.Random()
        self._due: dict[str, float] = {}
        #: (due time, region) for every time set in ``_due``; an entry whose time is no
        #: longer the region's is stale and dropped when it reaches the top.
        self._heap: list[tuple[float, str]] = []
        self._failures: dict[str, int] = {}
        #: Partners known to have answered: a check before this run, or one in it.
        self._answered: set[str] = set()
        self._next_slot = -math.inf

    def __contains__(self, region: str) -> bool:
        return region in self._due

    def regions(self) -> list[str]:
        return list(self._due)

    def due_at(self, region: str) -> float | None:
        return self._due.get(region)

    def failures(self, region: str) -> int:
        return self._failures.get(region, 0)

    def admit(
        self,
        regions: Iterable[str],
        now: float,
        last_checked: Mapping[str, float | None],
        last_failed: Mapping[str, float] | None = None,
    ) -> None:
        """Plan regions not planned yet: one interval (with jitter) after their last check, or
        a start slot when never checked or overdue. A region never checked whose last attempt
        failed (``last_failed``: when, e.g. before a restart) is due when its first retry
        would have been, if that is still to come: a restart does not try again at once every
        partner that is down."""
        fresh = []
        for region in regions:
            if region in self._due:
                continue
            checked = last_checked.get(region)
            if checked is not None:
                self._answered.add(region)
            if checked is not None and checked <= now:
                at = checked + self._spread(self.interval)
                if at > now:
                    self._set(region, at)
                    continue
            failed = (last_failed or {}).get(region)
            if checked is None and failed is not None and failed <= now:
                at = failed + self.retry_unanswered * self._rng.uniform(1 - self.jitter, 1.0)
                if at > now:
                    self._failures[region] = 1
                    self._set(region, at)
                    continue
            fresh.append(region)
        self._rng.shuffle(fresh)
        slot = max(self._next_slot, now)
        step = 1.0 / self.start_rate
        for region in fresh:
            self._set(region, slot)
            slot += step
        if fresh:
            self._next_slot = slot

    def forget(self, region: str) -> None:
        self._due.pop(region, None)
        self._failures.pop(region, None)
        self._answered.discard(region)

    def soon(self, region: str, now: float) -> None:
        """Due at once (on demand)."""
        self._set(region, now)

    def started(self, region: str) -> None:
        """A fetch of ``region`` began: not due again until it ends."""
        self._due[region] = math.inf

    def succeeded(self, region: str, now: float) -> float:
        self._failures.pop(region, None)
        self._answered.add(region)
        delay = self._spread(self.interval)
        self._set(region, now + delay)
        return delay

    def failed(self, region: str, now: float) -> float:
        """Back off ``region`` alone; returns the delay planned."""
        failures = self._failures.get(region, 0) + 1
        self._failures[region] = failures
        base = self.retry if region in self._answered else self.retry_unanswered
        delay = min(self.interval, base * 2.0 ** min(failures - 1, 30))
        delay *= self._rng.uniform(1 - self.jitter, 1.0)
        self._set(region, now + delay)
        return delay

    def due(self, now: float) -> list[str]:
        """Every region due at ``now``, longest overdue first (a pass over all of them: for
        tests and reports; the refresher asks :meth:`first_due`)."""
        return sorted((r for r, at in self._due.items() if at <= now), key=self._due.__getitem__)

    def first_due(self, now: float) -> str | None:
        """The region longest overdue at ``now``, or None. It stays due until
        :meth:`started` (or another plan) moves it."""
        top = self._top()
        return top[1] if top is not None and top[0] <= now else None

    def next_at(self) -> float | None:
        """When the next region falls due (None: none waits; running fetches do not count)."""
        top = self._top()
        return top[0] if top is not None else None

    def _set(self, region: str, at: float) -> None:
        self._due[region] = at
        heapq.heappush(self._heap, (at, region))
        if len(self._heap) > 2 * len(self._due) + 64:
            # Mostly stale entries (plans moved before they fell due): rebuild.
            self._heap = [(t, r) for r, t in self._due.items() if t != math.inf]
            heapq.heapify(self._heap)

    def _top(self) -> tuple[float, str] | None:
        heap = self._heap
        while heap:
            at, region = heap[0]
            if self._due.get(region) == at:
                return heap[0]
            heapq.heappop(heap)
        return None

    def _spread(self, base: float) -> float:
        return base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)
