"""The calendar in a node: loading files into the database (all or nothing), the hooks run in
the load's transaction, `tongban calendar load/show`, and the public calendar routes of a real
node. Runs on SQLite, and on PostgreSQL with TONGBAN_TEST_DATABASE_URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cli import main
from node.config import NodeConfig
from node.storage.database import Database
from node.storage.migrate import upgrade
from node.workdays.cache import CalendarCache
from node.workdays.calendar import Deadline, HolidayCalendar
from node.workdays.calendar_file import CalendarFileError
from node.workdays.models import calendar_days, calendar_years
from node.workdays.service import load_calendar, load_calendar_file, loaded_years
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs
from tests.test_workdays import EXAMPLE_2027

#: A correction of the 2027 example: 元旦 one day only, and 2028 added.
CORRECTED = """
[[years]]
year = 2027
notice = "更正"
holidays = [{ name = "元旦", from = 2027-01-01 }]

[[years]]
year = 2028
holidays = [{ name = "元旦", from = 2028-01-01, to = 2028-01-03 }]
"""

#: Good 2028 data followed by a bad 2027: nothing of it may be stored.
HALF_BAD = """
[[years]]
year = 2028
holidays = [{ name = "元旦", from = 2028-01-01, to = 2028-01-03 }]

[[years]]
year = 2027
holidays = [{ name = "春节", from = 2027-02-05, to = 2027-02-13, workdays = [2027-02-15] }]
"""


def d(text: str) -> date:
    return date.fromisoformat(text)


@pytest.fixture
async def config(tmp_path: Path, databases: DatabaseFactory) -> NodeConfig:
    [config] = await make_configs(tmp_path, databases, [("430400", "衡阳市")], link=False)
    return config


@pytest.fixture
async def db(config: NodeConfig) -> AsyncIterator[Database]:
    database = Database(config.database_url)
    await upgrade(database)
    yield database
    await database.dispose()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def stored(db: Database) -> tuple[list[tuple[int, str]], int]:
    async with db.read() as conn:
        years = [
            (r.year, r.source)
            for r in await conn.execute(
                select(calendar_years.c.year, calendar_years.c.source).order_by("year")
            )
        ]
        days = (await conn.execute(select(func.count()).select_from(calendar_days))).scalar()
    return years, int(days or 0)


# -- the service ---------------------------------------------------------------------------


async def test_loading_2027_makes_the_deadline_final(db: Database, tmp_path: Path) -> None:
    before = await load_calendar(db)
    assert before.add_working_days(d("2026-12-24"), 10) == Deadline(d("2027-01-07"), True)
    years = await load_calendar_file(db, write(tmp_path, "2027.toml", EXAMPLE_2027), loaded_by="t")
    assert years == [2027]
    after = await load_calendar(db)
    assert after.covers(2027) and after.covers(2026)
    # 2027-01-01 … 01-03 is now 元旦: one working day later, and final.
    assert after.add_working_days(d("2026-12-24"), 10) == Deadline(d("2027-01-08"), False)
    [loaded] = await loaded_years(db)
    assert (loaded.year, loaded.loaded_by) == (2027, "t")
    assert loaded.source == "2027.toml — 示例（非官方）：2027年部分节假日安排"
    assert await stored(db) == ([(2027, loaded.source)], 29 + 5)


async def test_a_reload_replaces_the_year(db: Database, tmp_path: Path) -> None:
    await load_calendar_file(db, write(tmp_path, "2027.toml", EXAMPLE_2027))
    assert await load_calendar_file(db, write(tmp_path, "fix.toml", CORRECTED)) == [2027, 2028]
    calendar = await load_calendar(db)
    # The corrected 2027 has only 2027-01-01: 春节 and its make-up days are gone.
    assert not calendar.is_working_day(d("2027-01-01"))
    assert calendar.is_working_day(d("2027-02-08"))
    assert not calendar.is_working_day(d("2027-02-14"))
    assert calendar.add_working_days(d("2026-12-24"), 10) == Deadline(d("2027-01-08"), False)
    assert calendar.covers(2028)
    years, days = await stored(db)
    assert years == [(2027, "fix.toml — 更正"), (2028, "fix.toml")]
    assert days == 1 + 3


async def test_a_loaded_year_replaces_the_packaged_one(db: Database, tmp_path: Path) -> None:
    text = '[[years]]\nyear = 2026\nholidays = [{ name = "元旦", from = 2026-01-01 }]'
    await load_calendar_file(db, write(tmp_path, "2026.toml", text))
    calendar = await load_calendar(db)
    assert calendar.is_working_day(d("2026-01-02"))  # packaged: 元旦 01-01 … 01-03
    assert calendar.is_working_day(d("2026-02-16"))  # packaged: 春节
    # 2025 still comes from the package.
    assert calendar.add_working_days(d("2025-01-24"), 5).date == d("2025-02-07")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("half_bad.toml", HALF_BAD, "2027-02-15 是星期一"),
        ("syntax.toml", "[[years]\n", "TOML 语法错误"),
        ("missing.toml", None, "文件不存在"),
    ],
)
async def test_bad_files_change_nothing(
    db: Database, tmp_path: Path, name: str, text: str | None, expected: str
) -> None:
    await load_calendar_file(db, write(tmp_path, "2027.toml", EXAMPLE_2027))
    before = await stored(db)
    path = write(tmp_path, name, text) if text is not None else tmp_path / name
    with pytest.raises(CalendarFileError) as info:
        await load_calendar_file(db, path)
    assert any(expected in p for p in info.value.problems), info.value.problems
    assert await stored(db) == before
    calendar = await load_calendar(db)
    assert not calendar.covers(2028)
    assert calendar.is_working_day(d("2027-02-14"))  # the example's make-up Sunday stands


async def test_hooks_run_inside_the_load_and_a_failing_one_undoes_it(
    db: Database, tmp_path: Path
) -> None:
    seen: list[tuple[bool, int]] = []

    async def recompute(conn: AsyncConnection, calendar: HolidayCalendar) -> None:
        # The new year is visible in the transaction and in the calendar handed over.
        count = (await conn.execute(select(func.count()).select_from(calendar_years))).scalar_one()
        seen.append((calendar.covers(2027), count))

    async def broken(conn: AsyncConnection, calendar: HolidayCalendar) -> None:
        raise RuntimeError("recompute failed")

    await load_calendar_file(db, write(tmp_path, "2027.toml", EXAMPLE_2027), after_load=[recompute])
    assert seen == [(True, 1)]

    with pytest.raises(RuntimeError):
        await load_calendar_file(
            db, write(tmp_path, "fix.toml", CORRECTED), after_load=[recompute, broken]
        )
    assert seen == [(True, 1), (True, 2)]
    years, _days = await stored(db)
    assert [y for y, _ in years] == [2027]
    assert (await load_calendar(db)).is_working_day(d("2027-02-14"))  # the example stands


async def test_the_cache_sees_loads_of_this_and_other_processes(
    db: Database, tmp_path: Path
) -> None:
    clock = [0.0]
    cache = CalendarCache(db, check_interval=5.0, clock=lambda: clock[0])
    first = await cache.get()
    assert not first.covers(2027)
    assert await cache.get() is first  # no reload without a load
    # A load in this process: seen at once.
    await load_calendar_file(db, write(tmp_path, "2027.toml", EXAMPLE_2027))
    assert (await cache.get()).covers(2027)
    # Another process raised the version (simulated: the table changed under us): seen after
    # the check interval, not before.
    async with db.write() as conn:
        await conn.execute(update(calendar_years).values(version=calendar_years.c.version + 1))
        await conn.execute(
            update(calendar_years).where(calendar_years.c.year == 2027).values(source="other")
        )
    assert (await cache.get()).year(2027).source != "other"  # type: ignore[union-attr]
    clock[0] += 6.0
    assert (await cache.get()).year(2027).source == "other"  # type: ignore[union-attr]


# -- the command line ----------------------------------------------------------------------


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_cli_load_and_show(
    config: NodeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = str(config.dir)
    assert await cli("calendar", "show", "--dir", directory, "--year", "2026") == 0
    out = capsys.readouterr().out
    assert "覆盖年份 covered years: 2004–2026" in out
    assert "内置 packaged: 2004–2026 (chinesecalendar" in out
    assert "春节  2026-02-15（周日） 至 2026-02-23（周一）  共 9 天" in out
    assert "2026-02-14（周六）  春节调休" in out
    assert "国庆节  2026-10-01（周四） 至 2026-10-07（周三）  共 7 天" in out

    path = write(tmp_path, "2027.toml", EXAMPLE_2027)
    assert await cli("calendar", "load", str(path), "--dir", directory) == 0
    assert "已载入 2027 年节假日安排 (loaded: 2027)" in capsys.readouterr().out

    assert await cli("calendar", "show", "--dir", directory, "--year", "2027") == 0
    out = capsys.readouterr().out
    assert "覆盖年份 covered years: 2004–2027" in out
    assert "载入 loaded: 2027 — 2027.toml — 示例（非官方）" in out
    assert "春节  2027-02-05（周五） 至 2027-02-13（周六）  共 9 天" in out
    assert "端午节  2027-06-09（周三）  共 1 天" in out
    assert "2027-10-09（周六）  国庆节调休" in out

    assert await cli("calendar", "show", "--dir", directory, "--year", "2030") == 0
    out = capsys.readouterr().out
    assert "2030 年：未载入，期限仅按周末计算（临时）" in out


async def test_cli_show_warns_when_next_year_is_missing(
    config: NodeConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from node.workdays import cli as workdays_cli

    monkeypatch.setattr(workdays_cli, "china_today", lambda: d("2026-11-23"))
    assert await cli("calendar", "show", "--dir", str(config.dir)) == 0
    out = capsys.readouterr().out
    assert "2026 年节假日 holidays:" in out
    assert "2027 年：未载入" in out
    assert "警告 / warning: 未载入 2027 年节假日安排" in out

    monkeypatch.setattr(workdays_cli, "china_today", lambda: d("2025-11-23"))
    assert await cli("calendar", "show", "--dir", str(config.dir)) == 0
    assert "警告" not in capsys.readouterr().out


async def test_cli_refuses_a_bad_file_and_changes_nothing(
    config: NodeConfig, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "bad.toml", HALF_BAD)
    assert await cli("calendar", "load", str(path), "--dir", str(config.dir)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "错误 / error: 日历文件未载入，未作任何更改" in captured.err
    assert "nothing changed" in captured.err
    assert (
        "years[1] (2027).holidays[0].workdays[0]: 2027-02-15 是星期一：调休上班日须为周六或周日"
        " (a make-up workday must be a Saturday or Sunday)" in captured.err
    )
    assert await stored(db) == ([], 0)
    assert await cli("calendar", "load", str(tmp_path / "nope.toml"), "--dir", str(config.dir)) == 1
    assert "文件不存在 (file not found)" in capsys.readouterr().err
    assert await cli("calendar", "show", "--dir", str(tmp_path / "nowhere")) == 1
    assert "tongban init" in capsys.readouterr().err


# -- HTTP on a real node -------------------------------------------------------------------


async def test_public_calendar_routes(config: NodeConfig, tmp_path: Path) -> None:
    node = await RunningNode(config).start()
    try:
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> tuple[int, dict[str, object]]:
                async with session.get(node.url + path) as resp:
                    return resp.status, await resp.json()

            status, body = await get("/api/v1/calendar?year=2026")
            assert status == 200
            assert body["covered"] is True and body["provisional"] is False
            assert body["source"].startswith("chinesecalendar")  # type: ignore[union-attr]
            assert {"name": "春节", "from": "2026-02-15", "to": "2026-02-23", "days": 9} in body[
                "holidays"
            ]  # type: ignore[operator]
            assert {"date": "2026-10-10", "name": "国庆节"} in body["workdays"]  # type: ignore[operator]
            assert 2026 in body["covered_years"]  # type: ignore[operator]

            status, body = await get("/api/v1/calendar?year=2027")
            assert status == 200
            assert body["covered"] is False and body["provisional"] is True
            assert body["holidays"] == [] and body["workdays"] == []

            status, body = await get("/api/v1/calendar/deadline?from=2026-12-24&days=10")
            assert (status, body) == (
                200,
                {
                    "from": "2026-12-24",
                    "days": 10,
                    "deadline": "2027-01-07",
                    "provisional": True,
                    "uncovered_years": [2027],
                },
            )
            status, body = await get("/api/v1/calendar/deadline?from=2025-09-26&days=20")
            assert body["deadline"] == "2025-10-30" and body["provisional"] is False

            # The admin loads 2027 while the node runs: the node's next answer uses it.
            path = write(tmp_path, "2027.toml", EXAMPLE_2027)
            assert await cli("calendar", "load", str(path), "--dir", str(config.dir)) == 0
            status, body = await get("/api/v1/calendar/deadline?from=2026-12-24&days=10")
            assert (body["deadline"], body["provisional"], body["uncovered_years"]) == (
                "2027-01-08",
                False,
                [],
            )
            status, body = await get("/api/v1/calendar?year=2027")
            assert body["covered"] is True
            assert body["holidays"][0] == {  # type: ignore[index]
                "name": "元旦",
                "from": "2027-01-01",
                "to": "2027-01-03",
                "days": 3,
            }

            for query, field in [
                ("/api/v1/calendar?year=abc", "year"),
                ("/api/v1/calendar?year=1999", "year"),
                ("/api/v1/calendar/deadline?days=3", "from"),
                ("/api/v1/calendar/deadline?from=2026-13-01&days=3", "from"),
                ("/api/v1/calendar/deadline?from=20261201&days=3", "from"),
                ("/api/v1/calendar/deadline?from=2026-12-01", "days"),
                ("/api/v1/calendar/deadline?from=2026-12-01&days=-1", "days"),
                ("/api/v1/calendar/deadline?from=2026-12-01&days=x", "days"),
                ("/api/v1/calendar/deadline?from=2026-12-01&days=1001", "days"),
            ]:
                status, body = await get(query)
                assert status == 400, query
                assert body["error"] == "invalid_input", query
                assert [f["field"] for f in body["fields"]] == [field], query  # type: ignore[union-attr]
    finally:
        await node.stop()
