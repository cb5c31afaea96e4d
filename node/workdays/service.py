"""Loading calendar files into the database, and the calendar a node computes with.

The calendar in force is the packaged default (chinesecalendar) with every year loaded into
the database laid over it: a loaded year replaces the default's data for that year.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from node.storage.database import Database, after_commit
from node.workdays.calendar import HolidayCalendar, YearCalendar
from node.workdays.calendar_file import CalendarFileError, parse_calendar_file
from node.workdays.defaults import default_calendar
from node.workdays.models import calendar_days, calendar_years

#: China has one time zone and no daylight saving time.
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
#: PostgreSQL advisory lock key, so two loads at once do not interleave their replacements.
_LOAD_LOCK = 7_415_020_302

#: Run by ``load_calendar_file`` inside its transaction, after the years are written, with the
#: new calendar in force (the case domain recomputes provisional deadlines: node/cli.py passes
#: it). A hook that raises undoes the whole load.
AfterLoad = Callable[[AsyncConnection, HolidayCalendar], Awaitable[object]]

#: Loads committed by this process; caches compare it to reload at once (other processes'
#: loads are seen through ``calendar_version``).
_local_loads = 0


def local_loads() -> int:
    """How many calendar loads this process has committed."""
    return _local_loads


def _count_local_load() -> None:
    global _local_loads
    _local_loads += 1


def china_today(now: float | None = None) -> date:
    """Today's date in China (the day a deadline is counted from)."""
    return datetime.fromtimestamp(time.time() if now is None else now, CHINA).date()


@dataclass(frozen=True)
class LoadedYear:
    """A year an admin loaded: where it came from, when, by whom."""

    year: int
    source: str
    loaded_at: float
    loaded_by: str


async def load_calendar_file(
    db: Database,
    path: Path | str,
    *,
    loaded_by: str | None = None,
    after_load: Sequence[AfterLoad] = (),
) -> list[int]:
    """Validate the calendar file at ``path`` and store its years; returns them, ascending.

    Each year in the file replaces that year wholly (its previous holidays and make-up days are
    removed), all in one transaction, with the ``after_load`` hooks run inside it. Raises
    CalendarFileError, changing nothing, if the file is unreadable or wrong.
    """
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CalendarFileError([f"{path}: 文件不存在 (file not found)"]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CalendarFileError([f"{path}: 无法读取 (cannot read): {exc}"]) from exc
    years = parse_calendar_file(content, source=path.name)
    who = loaded_by if loaded_by is not None else _os_user()
    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOAD_LOCK})
        version = await calendar_version(conn) + 1
        now = time.time()
        for year in years:
            await _replace_year(conn, year, version=version, loaded_at=now, loaded_by=who)
        calendar = await read_calendar(conn)
        for hook in after_load:
            await hook(conn, calendar)
        after_commit(conn, _count_local_load)
    return sorted(y.year for y in years)


async def _replace_year(
    conn: AsyncConnection, year: YearCalendar, *, version: int, loaded_at: float, loaded_by: str
) -> None:
    await conn.execute(delete(calendar_days).where(calendar_days.c.year == year.year))
    await conn.execute(delete(calendar_years).where(calendar_years.c.year == year.year))
    await conn.execute(
        insert(calendar_years).values(
            year=year.year,
            source=year.source[:500],
            loaded_at=loaded_at,
            loaded_by=loaded_by[:100],
            version=version,
        )
    )
    rows = [
        {"day": day, "year": year.year, "kind": "holiday", "name": name}
        for day, name in year.holidays.items()
    ] + [
        {"day": day, "year": year.year, "kind": "workday", "name": name}
        for day, name in year.workdays.items()
    ]
    if rows:
        await conn.execute(insert(calendar_days), rows)


async def load_calendar(db: Database) -> HolidayCalendar:
    """The calendar in force: the packaged default with the loaded years over it."""
    async with db.read() as conn:
        return await read_calendar(conn)


async def read_calendar(conn: AsyncConnection) -> HolidayCalendar:
    """``load_calendar`` on an open connection (e.g. inside a write transaction)."""
    sources = {
        row.year: row.source
        for row in await conn.execute(select(calendar_years.c.year, calendar_years.c.source))
    }
    holidays: dict[int, dict[date, str]] = {year: {} for year in sources}
    workdays: dict[int, dict[date, str]] = {year: {} for year in sources}
    for row in await conn.execute(select(calendar_days)):
        target = holidays if row.kind == "holiday" else workdays
        target[row.year][_as_date(row.day)] = row.name
    loaded = [
        YearCalendar(year=y, holidays=holidays[y], workdays=workdays[y], source=s)
        for y, s in sources.items()
    ]
    return default_calendar().overlay(loaded)


async def calendar_version(conn: AsyncConnection) -> int:
    """The highest load version in the database (0 before any load)."""
    return int((await conn.execute(select(func.max(calendar_years.c.version)))).scalar() or 0)


async def loaded_years(db: Database) -> list[LoadedYear]:
    """The years loaded into the database, ascending."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(
                calendar_years.c.year,
                calendar_years.c.source,
                calendar_years.c.loaded_at,
                calendar_years.c.loaded_by,
            ).order_by(calendar_years.c.year)
        )
        return [LoadedYear(r.year, r.source, r.loaded_at, r.loaded_by) for r in rows]


def _as_date(value: date | str) -> date:
    # SQLite hands back ISO strings when a query bypasses the column type.
    return value if isinstance(value, date) else date.fromisoformat(value)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no login name in some containers
        return "unknown"
