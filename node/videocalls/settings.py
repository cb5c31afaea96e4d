"""``[videocalls]`` in tongban.toml: the hall's opening hours and the queue's limits.

Opening hours are ranges of days and times in China time (Asia/Shanghai). The days are
weekdays (``mon-fri``, ``sat``) or ``workdays``: the official working days of the node's
holiday calendar (node/workdays: no statutory holidays, and the 调休 weekends that are worked)::

    [videocalls]
    hours = ["workdays 09:00-12:00", "workdays 13:30-17:30", "sat 09:00-12:00"]
    max_queue = 30
    client_calls_per_hour = 6
    client_calls_burst = 3
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

#: Whether a date is an official working day (the node's holiday calendar).
WorkingDay = Callable[[date], bool]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_LABELS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
WORKDAYS = "workdays"
_RANGE = re.compile(
    r"^(?P<first>[a-z]{3}|workdays)(?:-(?P<last>[a-z]{3}))?\s+"
    r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$"
)


@dataclass(frozen=True)
class OpeningRange:
    days: frozenset[int]  # 0 = Monday; empty for ``workdays``
    start: time
    end: time  # exclusive; 24:00 is written as time.max
    workdays: bool = False

    def covers(self, moment: datetime, working_day: WorkingDay) -> bool:
        on = working_day(moment.date()) if self.workdays else moment.weekday() in self.days
        return on and self.start <= moment.time() < self.end

    def label(self) -> str:
        end = "24:00" if self.end == time.max else f"{self.end:%H:%M}"
        if self.workdays:
            return f"工作日 {self.start:%H:%M}–{end}"
        days = sorted(self.days)
        first, last = DAY_LABELS[days[0]], DAY_LABELS[days[-1]]
        span = first if first == last else f"{first}至{last}"
        return f"{span} {self.start:%H:%M}–{end}"


def _clock(text: str, *, end: bool) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if end and (hours, minutes) == (24, 0):
        return time.max
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"bad time {text}")
    return time(hours, minutes)


def parse_range(text: str) -> OpeningRange:
    """``"mon-fri 09:00-12:00"``, one day (``"sat 09:00-12:00"``) or ``"workdays
    09:00-12:00"``; ValueError if not."""
    match = _RANGE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"opening hours {text!r}: write them like 'workdays 09:00-12:00'")
    start = _clock(match["start"], end=False)
    finish = _clock(match["end"], end=True)
    if finish <= start:
        raise ValueError(f"opening hours {text!r}: the end comes before the start")
    first, last = match["first"], match["last"]
    if first == WORKDAYS:
        if last:
            raise ValueError(f"opening hours {text!r}: 'workdays' is not a range of days")
        return OpeningRange(frozenset(), start, finish, workdays=True)
    last = last or first
    if first not in DAYS or last not in DAYS or DAYS.index(last) < DAYS.index(first):
        raise ValueError(f"opening hours {text!r}: days are mon … sun, in order")
    return OpeningRange(frozenset(range(DAYS.index(first), DAYS.index(last) + 1)), start, finish)


@dataclass(frozen=True)
class VideoCallSettings:
    hours: tuple[OpeningRange, ...] = field(
        default_factory=lambda: (
            parse_range("workdays 09:00-12:00"),
            parse_range("workdays 13:30-17:30"),
        )
    )
    #: Citizens waiting at once; the next one is told the queue is full.
    max_queue: int = 30
    #: Calls one client address may start: a bucket of ``client_calls_burst`` refilled at
    #: ``client_calls_per_hour``.
    client_calls_per_hour: int = 6
    client_calls_burst: int = 3

    def open_at(self, moment: datetime, working_day: WorkingDay) -> bool:
        return any(r.covers(moment, working_day) for r in self.hours)

    def labels(self) -> list[str]:
        return [r.label() for r in self.hours]


LIMITS = {"max_queue": (1, 1000), "client_calls_per_hour": (1, 600), "client_calls_burst": (1, 100)}


def video_call_settings(data: Any) -> VideoCallSettings:
    """The settings of a ``[videocalls]`` table; ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("[videocalls] must be a table")
    unknown = set(data) - {"hours", *LIMITS}
    if unknown:
        raise ValueError(f"unknown [videocalls] settings: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    if "hours" in data:
        hours = data["hours"]
        if not isinstance(hours, list) or not all(isinstance(h, str) for h in hours):
            raise ValueError("[videocalls] hours: a list like ['mon-fri 09:00-12:00']")
        values["hours"] = tuple(parse_range(h) for h in hours)
    for key, (low, high) in LIMITS.items():
        if key in data:
            value = data[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"[videocalls] {key} = {value!r}: a whole number, {low} to {high}")
            values[key] = value
    return VideoCallSettings(**values)
