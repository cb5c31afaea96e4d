"""China time: every date a case is counted in (deadlines, 受理日, case numbers) is a date in
China (UTC+8, no daylight saving), whatever the server's own time zone."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def today_in_china(now: float | None = None) -> date:
    """The date in China at ``now`` (UNIX seconds; the current time when None)."""
    return datetime.fromtimestamp(time.time() if now is None else now, CHINA).date()


def china_iso(moment: float | None = None, *, timespec: str = "seconds") -> str:
    """``moment`` (UNIX seconds; now when None) as ISO 8601 with the +08:00 offset."""
    value = time.time() if moment is None else moment
    return datetime.fromtimestamp(value, CHINA).isoformat(timespec=timespec)


def china_datetime(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, CHINA)
