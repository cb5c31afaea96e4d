"""The holiday calendar and working-day arithmetic (行政许可法 art. 82). Pure: no I/O.

Counting rules (docs/calendar.md):

- A day is a working day when it is a make-up workday (调休上班), or else when it is neither a
  statutory holiday nor a Saturday or Sunday. In a year the calendar does not cover, only
  weekends are days off.
- ``add_working_days(start, n)``: the day of ``start`` (受理) is not counted; the deadline is the
  n-th working day after it. It is *provisional* when any day in ``(start, deadline]`` lies in a
  year the calendar does not cover.
- ``working_days_between(a, b)``: the working days in ``(a, b]``. A pause (补正, art. 45) from
  ``a`` to ``b`` moves the deadline by that many working days.
- ``subtract_working_days(d, n)``: the earliest day on which at most ``n`` working days remain
  until ``d``, i.e. the working day ``w`` with exactly ``n`` working days in ``(w, d]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType

ONE_DAY = timedelta(days=1)
#: Years a calendar may describe (a sanity bound against typos such as 207 or 20277).
MIN_YEAR, MAX_YEAR = 2000, 2100


class CalendarError(ValueError):
    """Calendar data that contradicts itself (a date outside its year, a weekday 调休, …)."""


@dataclass(frozen=True)
class Deadline:
    """The last day of a time limit, and whether it rests on a year not yet published."""

    date: date
    #: True when some day counted lies in a year the calendar does not cover (weekends only);
    #: the deadline is recomputed once that year's calendar is loaded.
    provisional: bool


@dataclass(frozen=True)
class HolidayPeriod:
    """A run of consecutive holiday days with one name, e.g. 春节 2026-02-15 … 2026-02-23."""

    name: str
    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class YearCalendar:
    """One year as the State Council publishes it: holidays and make-up workdays, with names.

    ``holidays`` maps each day off to its holiday's name (weekends inside a holiday included);
    ``workdays`` maps each 调休 Saturday or Sunday to the name of the holiday it makes up for
    (may be empty). ``source`` says where the data came from.
    """

    year: int
    holidays: Mapping[date, str]
    workdays: Mapping[date, str]
    source: str = ""

    def __post_init__(self) -> None:
        if not MIN_YEAR <= self.year <= MAX_YEAR:
            raise CalendarError(f"year {self.year} outside {MIN_YEAR}–{MAX_YEAR}")
        for day in (*self.holidays, *self.workdays):
            if day.year != self.year:
                raise CalendarError(f"{day} is not in {self.year}")
        for day in self.workdays:
            if day.weekday() < 5:
                raise CalendarError(f"make-up workday {day} is not a Saturday or Sunday")
            if day in self.holidays:
                raise CalendarError(f"{day} is both a holiday and a make-up workday")
        # Private read-only copies: the caller's dicts may change, this year may not.
        object.__setattr__(self, "holidays", MappingProxyType(dict(sorted(self.holidays.items()))))
        object.__setattr__(self, "workdays", MappingProxyType(dict(sorted(self.workdays.items()))))

    def holiday_periods(self) -> list[HolidayPeriod]:
        """The holidays as runs of consecutive days with the same name, in date order."""
        periods: list[HolidayPeriod] = []
        for day, name in self.holidays.items():
            last = periods[-1] if periods else None
            if last is not None and last.name == name and last.last + ONE_DAY == day:
                periods[-1] = HolidayPeriod(name, last.first, day)
            else:
                periods.append(HolidayPeriod(name, day, day))
        return periods


class HolidayCalendar:
    """Which days are working days, for the years it covers; weekends only elsewhere.

    Immutable: ``overlay`` returns a new calendar.
    """

    __slots__ = ("_holidays", "_workdays", "_years")

    def __init__(self, years: Iterable[YearCalendar] = ()) -> None:
        by_year: dict[int, YearCalendar] = {}
        for year in years:
            if year.year in by_year:
                raise CalendarError(f"year {year.year} given twice")
            by_year[year.year] = year
        self._years: Mapping[int, YearCalendar] = MappingProxyType(dict(sorted(by_year.items())))
        self._holidays: Mapping[date, str] = MappingProxyType(
            {d: n for y in self._years.values() for d, n in y.holidays.items()}
        )
        self._workdays: Mapping[date, str] = MappingProxyType(
            {d: n for y in self._years.values() for d, n in y.workdays.items()}
        )

    def __repr__(self) -> str:
        return f"HolidayCalendar(years={list(self._years)})"

    # -- what it holds -------------------------------------------------------------------------

    @property
    def years(self) -> tuple[int, ...]:
        """The covered years, ascending."""
        return tuple(self._years)

    def year(self, year: int) -> YearCalendar | None:
        """The data of one covered year, or None."""
        return self._years.get(year)

    def covers(self, year: int) -> bool:
        """Whether the holidays and make-up days of ``year`` are known."""
        return year in self._years

    def missing_next_year(self, today: date) -> bool:
        """True when next year is not covered (the State Council publishes it in November)."""
        return not self.covers(today.year + 1)

    def overlay(self, years: Iterable[YearCalendar]) -> HolidayCalendar:
        """This calendar with ``years`` added, each replacing any data this one has for it."""
        merged = dict(self._years)
        for year in years:
            merged[year.year] = year
        return HolidayCalendar(merged.values())

    # -- single days ---------------------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        """A 调休 workday, or a Monday–Friday that is not a statutory holiday."""
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        return day.weekday() < 5

    def holiday_name(self, day: date) -> str | None:
        """The name of the holiday ``day`` belongs to, if it is one."""
        return self._holidays.get(day)

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day`` (when a stopped clock runs again)."""
        return self.add_working_days(day, 1).date

    # -- counting ------------------------------------------------------------------------------

    def add_working_days(self, start: date, days: int) -> Deadline:
        """The ``days``-th working day after ``start``; ``start`` itself is not counted.

        ``days`` = 0 gives ``start`` itself (nothing counted, never provisional).
        """
        if days < 0:
            raise ValueError("days must not be negative")
        day = start
        provisional = False
        counted = 0
        while counted < days:
            day += ONE_DAY
            provisional = provisional or not self.covers(day.year)
            if self.is_working_day(day):
                counted += 1
        return Deadline(day, provisional)

    def working_days_between(self, start: date, end: date) -> int:
        """The working days in ``(start, end]``: 0 when ``end`` is not after ``start``.

        A pause that began on ``start`` and ended on ``end`` moves a deadline by this many
        working days: the clock stops the day after the pause starts and runs again the day
        after it ends.
        """
        return sum(1 for day in _days_after(start, end) if self.is_working_day(day))

    def subtract_working_days(self, day: date, days: int) -> date:
        """The working day ``w`` with exactly ``days`` working days in ``(w, day]``.

        For a deadline ``d``: on ``subtract_working_days(d, 3)`` and after, at most three
        working days remain (the warning date). For a working day ``d`` and ``days`` ≥ 1 it
        inverts ``add_working_days``: ``add_working_days(w, days).date == d``.
        """
        if days < 0:
            raise ValueError("days must not be negative")
        counted = 0
        while counted < days:
            if self.is_working_day(day):
                counted += 1
            day -= ONE_DAY
        while not self.is_working_day(day):
            day -= ONE_DAY
        return day


def _days_after(start: date, end: date) -> Iterator[date]:
    day = start + ONE_DAY
    while day <= end:
        yield day
        day += ONE_DAY
