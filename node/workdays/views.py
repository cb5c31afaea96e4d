"""Public calendar routes: the holidays of a year, and a deadline counted in working days."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from node.appkeys import DATABASE
from node.http_errors import ApiError, field_error
from node.http_json import query_int
from node.workdays.cache import cache_for
from node.workdays.calendar import MAX_YEAR, MIN_YEAR, HolidayCalendar
from node.workdays.service import china_today

#: Largest time limit the deadline route computes, working days (art. 42's longest joint
#: limit is 60; items with special laws run longer, none near this).
MAX_DAYS = 1000


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/api/v1/calendar")
    async def calendar_year(request: web.Request) -> web.Response:
        """The holidays and make-up workdays of ``year`` (default: this year in China)."""
        year = query_int(request, "year", china_today().year, MIN_YEAR, MAX_YEAR)
        calendar = await cache_for(request.app[DATABASE]).get()
        return web.json_response(year_json(calendar, year, today=china_today()))

    @table.get("/api/v1/calendar/deadline")
    async def deadline(request: web.Request) -> web.Response:
        """The ``days``-th working day after ``from`` (the day of 受理 is not counted)."""
        problems: list[dict[str, str]] = []
        start = _query_date(request, "from", problems)
        days = _query_days(request, problems)
        if problems or start is None or days is None:
            raise ApiError(400, "invalid_input", "查询参数有误", problems)
        calendar = await cache_for(request.app[DATABASE]).get()
        result = calendar.add_working_days(start, days)
        uncovered = [y for y in range(start.year, result.date.year + 1) if not calendar.covers(y)]
        return web.json_response(
            {
                "from": start.isoformat(),
                "days": days,
                "deadline": result.date.isoformat(),
                "provisional": result.provisional,
                # Years counted on weekends alone, pending the State Council's notice.
                "uncovered_years": uncovered if result.provisional else [],
            }
        )

    return table


def year_json(calendar: HolidayCalendar, year: int, *, today: date) -> dict[str, Any]:
    """One year of the calendar as the public API shows it."""
    data = calendar.year(year)
    return {
        "year": year,
        "covered": data is not None,
        # Not covered: deadlines in this year count weekends only and may move later.
        "provisional": data is None,
        "source": data.source if data is not None else None,
        "covered_years": list(calendar.years),
        "holidays": [
            {"name": p.name, "from": p.first.isoformat(), "to": p.last.isoformat(), "days": p.days}
            for p in (data.holiday_periods() if data is not None else [])
        ],
        "workdays": [
            {"date": d.isoformat(), "name": n}
            for d, n in (data.workdays.items() if data is not None else [])
        ],
        "next_year_missing": calendar.missing_next_year(today),
    }


def _query_date(request: web.Request, name: str, problems: list[dict[str, str]]) -> date | None:
    raw = request.query.get(name)
    if raw is None:
        problems.append(field_error(name, "required", "缺少日期，格式 YYYY-MM-DD"))
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is None or len(raw) != 10 or not MIN_YEAR <= day.year <= MAX_YEAR:
        problems.append(field_error(name, "invalid", "日期格式应为 YYYY-MM-DD"))
        return None
    return day


def _query_days(request: web.Request, problems: list[dict[str, str]]) -> int | None:
    try:
        return query_int(request, "days", None, 0, MAX_DAYS)
    except ApiError as exc:
        problems.extend(exc.fields)
        return None
