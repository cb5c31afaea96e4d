"""The packaged default calendar, built from the ``chinesecalendar`` package.

That package carries the State Council's notices for every year up to its release (1.11.0:
2004–2026). Years an admin loads into the database replace these (node.workdays.service).
"""

from __future__ import annotations

from datetime import date
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from chinese_calendar import constants

from node.workdays.calendar import ONE_DAY, HolidayCalendar, YearCalendar

#: The names the State Council's notices use, by chinesecalendar's English names.
HOLIDAY_NAMES: dict[str, str] = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "Mid-autumn Festival": "中秋节",
    "National Day": "国庆节",
    "Anti-Fascist 70th Day": "中国人民抗日战争暨世界反法西斯战争胜利70周年纪念日",
}


def chinese_name(english: str) -> str:
    """The Chinese name of a chinesecalendar holiday (its own name if unknown)."""
    if english in HOLIDAY_NAMES:
        return HOLIDAY_NAMES[english]
    for member in constants.Holiday:
        if member.value == english:
            return str(getattr(member, "chinese", english))
    return english


def source_label() -> str:
    """``chinesecalendar <version>``: the module's own version, else the installed
    distribution's (a CI run once saw the metadata lookup miss)."""
    import chinese_calendar

    found = getattr(chinese_calendar, "__version__", None)
    if not found:
        try:
            found = version("chinesecalendar")
        except PackageNotFoundError:  # pragma: no cover - installed as a dependency
            return "chinesecalendar"
    return f"chinesecalendar {found}"


@cache
def default_calendar() -> HolidayCalendar:
    """Every year chinesecalendar covers, holidays named as the notices name them."""
    holidays: dict[date, str] = constants.holidays
    workdays: dict[date, str] = constants.workdays
    first, last = min(holidays).year, max(holidays).year
    source = source_label()
    years = []
    for year in range(first, last + 1):
        days = {d: chinese_name(n) for d, n in holidays.items() if d.year == year}
        years.append(
            YearCalendar(
                year=year,
                holidays=_name_runs(days),
                workdays={d: chinese_name(n) for d, n in workdays.items() if d.year == year},
                source=source,
            )
        )
    return HolidayCalendar(years)


def _name_runs(days: dict[date, str]) -> dict[date, str]:
    """Name each run of consecutive holiday days by all the names in it, as the notices do:
    2025-10-01 … 10-08 (10-06 is 中秋节) is "国庆节、中秋节"."""
    out: dict[date, str] = {}
    run: list[date] = []
    for day in [*sorted(days), None]:
        if run and (day is None or run[-1] + ONE_DAY != day):
            names = list(dict.fromkeys(days[d] for d in run))
            for d in run:
                out[d] = "、".join(names)
            run = []
        if day is not None:
            run.append(day)
    return out
