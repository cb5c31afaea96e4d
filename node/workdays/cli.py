"""`tongban calendar load FILE` and `tongban calendar show` (registered by node.cli)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from node.config import NodeConfig
from node.storage.database import Database
from node.storage.migrate import upgrade
from node.workdays.calendar import HolidayCalendar
from node.workdays.calendar_file import CalendarFileError
from node.workdays.service import (
    CHINA,
    AfterLoad,
    LoadedYear,
    china_today,
    load_calendar,
    load_calendar_file,
    loaded_years,
)

_WEEKDAYS = "一二三四五六日"


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    *,
    after_load: Sequence[AfterLoad] = (),
) -> None:
    """Add `calendar load` and `calendar show` to the `tongban` parser; ``after_load`` run
    inside every load's transaction (the case domain's recompute of provisional deadlines)."""
    calendar = sub.add_parser(
        "calendar", help="holiday calendar (节假日安排) for working-day time limits"
    ).add_subparsers()
    p = calendar.add_parser(
        "load", help="load next year's holidays and make-up workdays (docs/calendar.md)"
    )
    p.add_argument("file", type=Path, help="calendar TOML file")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_load, after_load=after_load)
    p = calendar.add_parser("show", help="covered years, holidays and make-up workdays")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--year", type=int, help="default: this year and next")
    p.set_defaults(func=_show)


def _load(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)

    async def go() -> list[int]:
        db = Database(config.database_url)
        try:
            await upgrade(db)
            return await load_calendar_file(db, args.file, after_load=args.after_load)
        finally:
            await db.dispose()

    try:
        years = asyncio.run(go())
    except CalendarFileError as exc:
        print(
            f"错误 / error: 日历文件未载入，未作任何更改 ({args.file} not loaded, nothing changed)",
            file=sys.stderr,
        )
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    listed = "、".join(str(y) for y in years)
    print(f"已载入 {listed} 年节假日安排 (loaded: {', '.join(map(str, years))})")
    return 0


def _show(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.dir)

    async def go() -> tuple[HolidayCalendar, list[LoadedYear]]:
        db = Database(config.database_url)
        try:
            await upgrade(db)
            return await load_calendar(db), await loaded_years(db)
        finally:
            await db.dispose()

    calendar, loaded = asyncio.run(go())
    today = china_today()
    print(render(calendar, loaded, today=today, years=[args.year] if args.year else None))
    return 0


def render(
    calendar: HolidayCalendar,
    loaded: list[LoadedYear],
    *,
    today: date,
    years: list[int] | None = None,
) -> str:
    """The text of `calendar show`: coverage, then each year's holidays and make-up days."""
    lines = [f"覆盖年份 covered years: {_ranges(calendar.years)}"]
    by_year = {y.year: y for y in loaded}
    default = [y for y in calendar.years if y not in by_year]
    if default:
        source = calendar.year(default[-1])
        lines.append(f"  内置 packaged: {_ranges(default)} ({source.source if source else ''})")
    for item in loaded:
        at = datetime.fromtimestamp(item.loaded_at, CHINA).strftime("%Y-%m-%d %H:%M")
        lines.append(f"  载入 loaded: {item.year} — {item.source} ({item.loaded_by}, {at})")
    for year in years or [today.year, today.year + 1]:
        lines.append("")
        data = calendar.year(year)
        if data is None:
            lines.append(f"{year} 年：未载入，期限仅按周末计算（临时）(not covered: weekends only)")
            continue
        lines.append(f"{year} 年节假日 holidays:")
        for period in data.holiday_periods():
            span = _day(period.first)
            if period.last != period.first:
                span += f" 至 {_day(period.last)}"
            lines.append(f"  {period.name}  {span}  共 {period.days} 天")
        lines.append(f"{year} 年调休上班 make-up workdays:")
        for day, name in data.workdays.items():
            lines.append(f"  {_day(day)}  {name}调休" if name else f"  {_day(day)}")
        if not data.workdays:
            lines.append("  无 (none)")
    if calendar.missing_next_year(today):
        lines.append("")
        lines.append(
            f"警告 / warning: 未载入 {today.year + 1} 年节假日安排，跨入该年的期限按周末临时计算；"
            f"国务院办公厅通知发布后请执行 tongban calendar load "
            f"({today.year + 1} not loaded: deadlines into it are provisional)"
        )
    return "\n".join(lines)


def _day(day: date) -> str:
    return f"{day.isoformat()}（周{_WEEKDAYS[day.weekday()]}）"


def _ranges(years: tuple[int, ...] | list[int]) -> str:
    """2004–2026, 2028 (consecutive years joined)."""
    if not years:
        return "无 (none)"
    parts: list[str] = []
    first = prev = years[0]
    for year in [*years[1:], None]:
        if year is not None and year == prev + 1:
            prev = year
            continue
        parts.append(str(first) if first == prev else f"{first}–{prev}")
        if year is not None:
            first = prev = year
    return ", ".join(parts)
