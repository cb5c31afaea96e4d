"""The calendar file an admin loads each November (format: docs/calendar.md). Pure: no I/O.

```toml
[[years]]
year = 2027
notice = "国务院办公厅关于2027年部分节假日安排的通知"
holidays = [
  { name = "春节", from = 2027-02-05, to = 2027-02-13, workdays = [2027-02-14, 2027-02-20] },
]
```

Every problem is reported, each with where it is, in Chinese and English.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from node.workdays.calendar import MAX_YEAR, MIN_YEAR, ONE_DAY, YearCalendar

#: Longest holiday name accepted (the longest real one, the 2015 victory day, has 26).
MAX_NAME = 40
#: Longest holiday period accepted, days (the longest real one, 春节, has had 9).
MAX_PERIOD_DAYS = 15

_YEAR_KEYS = {"year", "notice", "holidays"}
_HOLIDAY_KEYS = {"name", "from", "to", "workdays"}
_WEEKDAYS = "一二三四五六日"


class CalendarFileError(Exception):
    """A calendar file that cannot be loaded; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class _Problems:
    items: list[str]

    def add(self, where: str, chinese: str, english: str) -> None:
        self.items.append(f"{where}: {chinese} ({english})")


def parse_calendar_file(text: str, source: str = "") -> list[YearCalendar]:
    """The years of a calendar file, validated; raises CalendarFileError listing every problem.

    ``source`` labels the data (e.g. the file name); a year's ``notice`` is appended to it.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CalendarFileError([f"TOML 语法错误 (TOML syntax error): {exc}"]) from exc
    problems = _Problems([])
    unknown = sorted(set(data) - {"years"})
    if unknown:
        problems.add("文件", f"不认识的键 {', '.join(unknown)}", "unknown keys")
    entries = data.get("years")
    if not (isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries)):
        problems.add("years", "须有至少一个 [[years]] 表", "at least one [[years]] table needed")
        raise CalendarFileError(problems.items)
    years: list[YearCalendar] = []
    seen: set[int] = set()
    for index, entry in enumerate(entries):
        year = _parse_year(entry, f"years[{index}]", problems, source)
        if year is None:
            continue
        if year.year in seen:
            problems.add(f"years[{index}]", f"{year.year} 年重复出现", "year given twice")
        seen.add(year.year)
        years.append(year)
    if problems.items:
        raise CalendarFileError(problems.items)
    return years


def _parse_year(
    entry: dict[str, Any], where: str, problems: _Problems, source: str
) -> YearCalendar | None:
    before = len(problems.items)
    unknown = sorted(set(entry) - _YEAR_KEYS)
    if unknown:
        problems.add(where, f"不认识的键 {', '.join(unknown)}", "unknown keys")
    year = entry.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not MIN_YEAR <= year <= MAX_YEAR:
        problems.add(
            f"{where}.year",
            f"须为 {MIN_YEAR}–{MAX_YEAR} 之间的整数年份",
            f"an integer year {MIN_YEAR}-{MAX_YEAR} is required",
        )
        return None
    where = f"{where} ({year})"
    notice = entry.get("notice", "")
    if not isinstance(notice, str):
        problems.add(f"{where}.notice", "须为字符串", "must be a string")
        notice = ""
    periods = entry.get("holidays")
    if not isinstance(periods, list) or not periods:
        problems.add(
            f"{where}.holidays",
            "须列出该年的法定节假日（至少一项）",
            "list the year's holidays (at least one)",
        )
        return None
    holidays: dict[date, str] = {}
    workdays: dict[date, str] = {}
    for index, period in enumerate(periods):
        _parse_period(period, year, f"{where}.holidays[{index}]", holidays, workdays, problems)
    for day, name in workdays.items():
        if day in holidays:
            problems.add(
                where,
                f"{day} 既是{holidays[day]}假日又是{name}调休上班日",
                "a day cannot be both a holiday and a make-up workday",
            )
    if len(problems.items) > before:
        return None
    label = " — ".join(part for part in (source, notice.strip()) if part)
    return YearCalendar(year=year, holidays=holidays, workdays=workdays, source=label)


def _parse_period(
    period: object,
    year: int,
    where: str,
    holidays: dict[date, str],
    workdays: dict[date, str],
    problems: _Problems,
) -> None:
    if not isinstance(period, dict):
        problems.add(where, "须为 {name, from, to} 内联表", "must be an inline table")
        return
    unknown = sorted(set(period) - _HOLIDAY_KEYS)
    if unknown:
        problems.add(where, f"不认识的键 {', '.join(unknown)}", "unknown keys")
    name = period.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        problems.add(
            f"{where}.name",
            f"须为节日名称（1–{MAX_NAME} 字），如 春节",
            "a holiday name is required",
        )
        name = "?"
    name = name.strip()
    first = _date(period.get("from"), year, f"{where}.from", problems)
    # A one-day holiday may leave out "to".
    last = _date(period["to"], year, f"{where}.to", problems) if "to" in period else first
    if first is not None and last is not None:
        if last < first:
            problems.add(where, f"结束日 {last} 早于开始日 {first}", "'to' is before 'from'")
        elif (last - first).days + 1 > MAX_PERIOD_DAYS:
            problems.add(
                where,
                f"假期长达 {(last - first).days + 1} 天，超过 {MAX_PERIOD_DAYS} 天，请核对",
                f"longer than {MAX_PERIOD_DAYS} days: check the dates",
            )
        else:
            day = first
            while day <= last:
                if day in holidays:
                    problems.add(
                        where,
                        f"{day} 已属于{holidays[day]}假期，假期不得重叠",
                        "holidays overlap",
                    )
                    break
                holidays[day] = name
                day += ONE_DAY
    listed = period.get("workdays", [])
    if not isinstance(listed, list):
        problems.add(f"{where}.workdays", "须为日期列表", "must be a list of dates")
        return
    for index, value in enumerate(listed):
        day = _date(value, year, f"{where}.workdays[{index}]", problems)
        if day is None:
            continue
        if day.weekday() < 5:
            problems.add(
                f"{where}.workdays[{index}]",
                f"{day} 是星期{_WEEKDAYS[day.weekday()]}：调休上班日须为周六或周日",
                "a make-up workday must be a Saturday or Sunday",
            )
        elif day in workdays:
            problems.add(f"{where}.workdays[{index}]", f"{day} 重复列出", "listed twice")
        else:
            workdays[day] = name


def _date(value: object, year: int, where: str, problems: _Problems) -> date | None:
    if isinstance(value, datetime) or not isinstance(value, date):
        problems.add(
            where,
            "须为不加引号的 TOML 日期，如 2027-02-06",
            "a TOML local date without quotes is required",
        )
        return None
    if value.year != year:
        problems.add(where, f"{value} 不在 {year} 年内", f"not in {year}")
        return None
    return value
