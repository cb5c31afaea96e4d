"""The calendar a node computes with, kept in memory and reloaded after a calendar load.

A load in this process is seen at once; a load by another process (``tongban calendar load``
while the node runs, or another replica) is seen within ``CHECK_INTERVAL`` seconds, through the
version counter of the ``calendar_years`` table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from weakref import WeakKeyDictionary

from node.storage.database import Database
from node.workdays.calendar import HolidayCalendar
from node.workdays.service import calendar_version, local_loads, read_calendar

#: Seconds between two looks at the database's calendar version (one tiny query).
CHECK_INTERVAL = 5.0

#: The cache of each open database, so the case domain and the views share one.
_caches: WeakKeyDictionary[Database, CalendarCache] = WeakKeyDictionary()


class CalendarCache:
    """The calendar in force for one database."""

    def __init__(
        self,
        db: Database,
        *,
        check_interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._check_interval = check_interval
        self._clock = clock
        self._calendar: HolidayCalendar | None = None
        # The database version the calendar was read at, and this process's load count then.
        self._version = -1
        self._local = -1
        self._checked = 0.0
        self._lock = asyncio.Lock()
        _caches.setdefault(db, self)

    async def get(self) -> HolidayCalendar:
        """The current calendar (read again when a load happened since)."""
        if self._fresh():
            assert self._calendar is not None
            return self._calendar
        async with self._lock:
            if not self._fresh():
                local = local_loads()
                async with self._db.read() as conn:
                    version = await calendar_version(conn)
                    if self._calendar is None or version != self._version:
                        self._calendar = await read_calendar(conn)
                        self._version = version
                self._local = local
                self._checked = self._clock()
            assert self._calendar is not None
            return self._calendar

    def invalidate(self) -> None:
        """Read the calendar again on the next ``get``."""
        self._calendar = None

    def _fresh(self) -> bool:
        return (
            self._calendar is not None
            and self._local == local_loads()
            and self._clock() - self._checked < self._check_interval
        )


def cache_for(db: Database) -> CalendarCache:
    """The calendar cache of ``db`` (the one the node made at start-up, or a new one)."""
    cache = _caches.get(db)
    if cache is None:
        cache = CalendarCache(db)
    return cache
