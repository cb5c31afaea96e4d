"""The refresher that keeps every partner's catalogue current (on the plan of
node/catalog/schedule.py, every 30 minutes and on demand), and its wiring into the app."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from sqlalchemy import select

from node.appkeys import CATALOG_REFRESHER, DATABASE, FEDERATION
from node.catalog.index import ensure_index
from node.catalog.models import partner_catalogs
from node.catalog.partner_cache import (
    UNKNOWN,
    CatalogRefreshError,
    record_failures,
    refresh_partner_catalog,
)
from node.catalog.schedule import DEFAULT_JITTER, DEFAULT_START_RATE, RefreshSchedule
from node.federation.client import PartnerClient
from node.federation.trust import TrustStore
from node.storage.database import Database
from node.waiting import wait_event

log = logging.getLogger(__name__)

#: How often every partner's catalogue is fetched, seconds.
REFRESH_INTERVAL = 30 * 60.0
#: First retry after a failed fetch, seconds; doubles per failure up to REFRESH_INTERVAL.
RETRY_INTERVAL = 30.0
#: The same for a partner that has never answered (no check known before this run or in it).
UNANSWERED_RETRY_INTERVAL = 300.0
#: How often the refresher looks for partners added to partners.toml, seconds.
PARTNER_CHECK_INTERVAL = 5.0
#: Partner catalogues fetched at once, at most. A fetch to a partner whose network drops our
#: SYNs holds its slot for the connect timeout (client.CATALOG_CONNECT_TIMEOUT, 4 s): 16 slots
#: fetch 4 a second even when thousands are down that way, above what 3,000 partners ask at
#: their slowest retry (one each 30 minutes: 1.7 a second). A catalogue is at most 4 MiB, so
#: at most 64 MiB of them are read at once.
REFRESH_CONCURRENCY = 16
#: The loop sleeps at least this long between rounds, seconds, and launches in a round every
#: fetch due by then (never one before its time): a process woken for each fetch paid for
#: the wake-up more than for the fetch (10 failed fetches a second cost 1.2 ms of CPU each
#: one by one). A fetch that ends wakes it early only when a due one waits for its slot;
#: :meth:`CatalogRefresher.refresh_soon` wakes it at once.
ROUND_INTERVAL = 1.0
#: Failed background fetches are noted in the partners' rows together: when the oldest noted
#: has waited this long, seconds, or when this many wait (one transaction instead of one each:
#: with 3,000 partners mostly down, a write per failure was most of the refresher's cost).
FAILURES_FLUSH_AFTER = 2.0
FAILURES_FLUSH_AT = 200
#: Failed fetches are logged together too: one line for every failure of this many seconds,
#: with how many there were, why, and the first of them (a JSON line per failure was a
#: sixth of a failure's cost, and 3,000 partners that are down fail thousands of times an
#: hour). Each partner's last failure is in its row (``partner_catalogs.error``).
FAILURES_LOGGED_EVERY = 60.0
#: What a failure is counted under in that line: the error's name, or the HTTP status.
_REASON_KIND = re.compile(r"catalogue: HTTP \d+|[^:]{1,60}")


class CatalogRefresher:
    """Keeps every partner's catalogue current, on the plan of :class:`RefreshSchedule`:
    first fetches spread over time (at most ``start_rate`` a second), then every ``interval``
    seconds ± jitter after each partner's last check; a failed fetch is retried after
    ``retry_interval`` (``unanswered_retry_interval`` for a partner that has never answered),
    doubling up to ``interval``, for that partner alone. At most
    ``concurrency`` fetches run at once, and a slow partner holds only its own slot. Fetches
    are launched in rounds at least :data:`ROUND_INTERVAL` apart; failures are noted in the
    database and logged together. Partners added to partners.toml are planned within seconds.
    :meth:`refresh_soon` and :meth:`refresh_now` fetch on demand."""

    def __init__(
        self,
        db: Database,
        trust: TrustStore,
        client: PartnerClient,
        *,
        interval: float = REFRESH_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
        unanswered_retry_interval: float = UNANSWERED_RETRY_INTERVAL,
        learn_keys: Callable[[str], Awaitable[bool]] | None = None,
        concurrency: int = REFRESH_CONCURRENCY,
        jitter: float = DEFAULT_JITTER,
        start_rate: float = DEFAULT_START_RATE,
    ) -> None:
        self._db = db
        self._trust = trust
        self._client = client
        self._learn_keys = learn_keys
        self._schedule = RefreshSchedule(
            interval,
            retry_interval,
            jitter=jitter,
            start_rate=start_rate,
            retry_unanswered=unanswered_retry_interval,
        )
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Task[str | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The ETag of the catalogue we hold, by partner, while known (read when a partner is
        #: planned; forgotten after a fetch that stored or confirmed one): a partner that
        #: keeps failing costs no read before each attempt.
        self._held: dict[str, str | None] = {}
        #: Failed background fetches not yet noted in the database, and since when.
        self._failures: list[tuple[str, float, str]] = []
        self._failures_since = 0.0
        #: The trust store's partners as last planned (it replaces the mapping on a change).
        self._admitted: object = None
        #: A due fetch waits for a slot: an ending fetch wakes the loop.
        self._slot_wanted = False
        #: When the loop means to wake next (``time.time()``): a fetch that ends and is due
        #: again before then wakes it.
        self._wake_at = 0.0
        #: Failed fetches not logged yet: by kind of reason, the partners, the first one.
        self._unlogged: Counter[str] = Counter()
        self._unlogged_partners: set[str] = set()
        self._unlogged_first: tuple[str, str] | None = None
        self._logged_at = time.monotonic()

    @property
    def schedule(self) -> RefreshSchedule:
        return self._schedule

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="catalog-refresher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        tasks = [t for t in [task, *self._running.values()] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        await self._flush_failures()
        self._log_failures()

    def refresh_soon(self, region: str | None = None) -> None:
        """Fetch ``region``'s catalogue (every partner's if None) at once, in the background."""
        now = time.time()
        for name in [region] if region else list(self._trust.partners):
            if name not in self._running:
                self._schedule.soon(name, now)
        self._wake.set()

    async def refresh_now(self, region: str | None = None) -> dict[str, str | None]:
        """Fetch now and wait (``concurrency`` at a time): partner region → None on success,
        else the reason."""
        regions = [region] if region else sorted(self._trust.partners)
        results = await asyncio.gather(*(self.refresh(r) for r in regions))
        return dict(zip(regions, results, strict=True))

    async def refresh(self, region: str, *, background: bool = False) -> str | None:
        """Fetch one partner's catalogue; None on success, else the reason (also recorded:
        at once, or with ``background`` within :data:`FAILURES_FLUSH_AFTER` seconds)."""
        lock = self._locks.setdefault(region, asyncio.Lock())
        try:
            async with lock, self._slots:
                self._schedule.started(region)
                try:
                    await refresh_partner_catalog(
                        self._db,
                        self._trust,
                        self._client,
                        region,
                        learn_keys=self._learn_keys,
                        held_etag=self._held.get(region, UNKNOWN),
                        on_failure=self._note_failure if background else None,
                    )
                except CatalogRefreshError as exc:
                    self._schedule.failed(region, time.time())
                    self._count_failure(region, exc.reason)
                    return exc.reason
                except Exception as exc:
                    self._schedule.failed(region, time.time())
                    log.exception(
                        "refreshing a partner catalogue failed", extra={"partner": region}
                    )
                    return f"{type(exc).__name__}: {exc}"
                self._schedule.succeeded(region, time.time())
                self._held.pop(region, None)  # what we hold now is read again next time
                return None
        finally:
            if not background:
                self._wake.set()  # the plan moved; a background fetch wakes via _finished

    def _count_failure(self, region: str, reason: str) -> None:
        if not self._unlogged:
            self._logged_at = time.monotonic()
        match = _REASON_KIND.match(reason)
        self._unlogged[match.group(0) if match else "?"] += 1
        self._unlogged_partners.add(region)
        if self._unlogged_first is None:
            self._unlogged_first = (region, reason)

    def _log_failures(self) -> None:
        """One line for the failed fetches counted since the last one."""
        if not self._unlogged:
            return
        first = self._unlogged_first or ("", "")
        log.warning(
            "partner catalogues not refreshed",
            extra={
                "failures": self._unlogged.total(),
                "partners": len(self._unlogged_partners),
                "seconds": round(time.monotonic() - self._logged_at, 1),
                "why": dict(self._unlogged.most_common(5)),
                "first_partner": first[0],
                "first_why": first[1],
            },
        )
        self._unlogged = Counter()
        self._unlogged_partners = set()
        self._unlogged_first = None
        self._logged_at = time.monotonic()

    async def _note_failure(self, region: str, when: float, reason: str) -> None:
        if not self._failures:
            self._failures_since = time.monotonic()
        self._failures.append((region, when, reason))
        if len(self._failures) >= FAILURES_FLUSH_AT:
            await self._flush_failures()

    async def _flush_failures(self) -> None:
        failures, self._failures = self._failures, []
        try:
            await record_failures(self._db, failures)
        except Exception:
            log.exception("noting failed catalogue fetches failed", extra={"count": len(failures)})

    async def _admit(self, now: float) -> None:
        """Plan partners new to the schedule (from their last check); forget removed ones.
        Nothing to do (and no pass over the partners) while the trust store's partners are
        the ones last planned: it replaces them whole when partners.toml or the directory
        changes."""
        current = self._trust.partners
        if current is self._admitted:
            return
        partners = set(current)
        for region in self._schedule.regions():
            if region not in partners and region not in self._running:
                self._schedule.forget(region)
                self._held.pop(region, None)
        new = sorted(partners.difference(self._schedule.regions()))
        if not new:
            self._admitted = current
            return
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        partner_catalogs.c.region,
                        partner_catalogs.c.checked_at,
                        partner_catalogs.c.fetched_at,
                        partner_catalogs.c.etag,
                        partner_catalogs.c.token.is_not(None).label("held"),
                        partner_catalogs.c.attempted_at,
                        partner_catalogs.c.error,
                    ).where(partner_catalogs.c.region.in_(new))
                )
            ).all()
        last = {r.region: max(r.checked_at or 0.0, r.fetched_at or 0.0) or None for r in rows}
        failed = {
            r.region: r.attempted_at
            for r in rows
            if r.error is not None and r.attempted_at is not None
        }
        held = {r.region: r.etag if r.held else None for r in rows}
        for region in new:
            self._held[region] = held.get(region)
        self._schedule.admit(new, now, last, failed)
        self._admitted = current

    def _launch(self, region: str) -> None:
        self._schedule.started(region)
        task = asyncio.create_task(
            self.refresh(region, background=True), name=f"catalog-refresh-{region}"
        )
        self._running[region] = task
        task.add_done_callback(functools.partial(self._finished, region))

    def _finished(self, region: str, _task: asyncio.Task[str | None]) -> None:
        self._running.pop(region, None)
        # Woken here, after the slot is free (a wake at the end of ``refresh`` ran the loop
        # before this callback: it saw every slot taken and slept with one free).
        due = self._schedule.due_at(region)
        if self._slot_wanted or (due is not None and due < self._wake_at):
            self._wake.set()

    async def _run(self) -> None:
        while True:
            now = time.time()
            try:
                await self._admit(now)
            except Exception:
                log.exception("planning partner catalogue refreshes failed")
            while len(self._running) < self._concurrency:
                region = self._schedule.first_due(now)
                if region is None:
                    break
                if region in self._running:
                    self._schedule.started(region)  # on demand meanwhile; planned when done
                elif region not in self._trust.partners:
                    # Removed from partners.toml while its fetch ran (so not forgotten then).
                    self._schedule.forget(region)
                    self._held.pop(region, None)
                else:
                    self._launch(region)
            self._slot_wanted = len(self._running) >= self._concurrency
            next_at = self._schedule.next_at()
            wait = PARTNER_CHECK_INTERVAL
            if next_at is not None:
                wait = min(max(ROUND_INTERVAL, next_at - time.time()), PARTNER_CHECK_INTERVAL)
            if self._failures:
                flush_in = self._failures_since + FAILURES_FLUSH_AFTER - time.monotonic()
                if flush_in <= 0:
                    await self._flush_failures()
                else:
                    wait = min(wait, max(ROUND_INTERVAL, flush_in))
            if self._unlogged:
                log_in = self._logged_at + FAILURES_LOGGED_EVERY - time.monotonic()
                if log_in <= 0:
                    self._log_failures()
                else:
                    wait = min(wait, max(ROUND_INTERVAL, log_in))
            self._wake_at = time.time() + wait
            await wait_event(self._wake, wait)
            self._wake.clear()


# -- wiring into the app ---------------------------------------------------------------------


async def start_catalog_refresher(app: web.Application) -> CatalogRefresher:
    """Bring the search index up to date with the cached catalogues (node/catalog/index.py
    ``ensure_index``) and start refreshing partners' catalogues. Call after the federation has
    started (it needs the loaded trust store and the started HTTP client)."""
    fed = app[FEDERATION]
    names = {region: partner.name for region, partner in fed.trust.partners.items()}
    names[fed.identity.region] = fed.identity.name
    await ensure_index(app[DATABASE], fed.identity.region, names)
    refresher = CatalogRefresher(
        app[DATABASE], fed.trust, fed.client, learn_keys=fed.refresher.refresh
    )
    app[CATALOG_REFRESHER] = refresher
    refresher.start()
    return refresher


async def stop_catalog_refresher(app: web.Application) -> None:
    """Stop the refresher started by :func:`start_catalog_refresher` (before the federation
    stops)."""
    refresher = app.get(CATALOG_REFRESHER)
    if refresher is not None:
        await refresher.stop()


async def catalog_refresher_ctx(app: web.Application) -> AsyncIterator[None]:
    """For ``app.cleanup_ctx``, appended after the context that starts the federation."""
    await start_catalog_refresher(app)
    try:
        yield
    finally:
        await stop_catalog_refresher(app)
