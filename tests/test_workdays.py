"""Working days: deadlines across 春节 and 国庆节 with their 调休 days (real 2025 and 2026 data
from chinesecalendar), provisional deadlines into 2027, and the calendar file's checks. Pure:
no database, no server."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from node.workdays.calendar import CalendarError, Deadline, HolidayCalendar, YearCalendar
from node.workdays.calendar_file import CalendarFileError, parse_calendar_file
from node.workdays.defaults import default_calendar

DOCS = Path(__file__).resolve().parent.parent / "docs" / "calendar.md"

#: The example of docs/calendar.md (not the State Council's notice: dates made up for tests).
EXAMPLE_2027 = """
[[years]]
year = 2027
notice = "示例（非官方）：2027年部分节假日安排"
holidays = [
  { name = "元旦", from = 2027-01-01, to = 2027-01-03 },
  { name = "春节", from = 2027-02-05, to = 2027-02-13, workdays = [2027-02-14, 2027-02-20] },
  { name = "清明节", from = 2027-04-03, to = 2027-04-05 },
  { name = "劳动节", from = 2027-05-01, to = 2027-05-05, workdays = [2027-05-08] },
  { name = "端午节", from = 2027-06-09 },
  { name = "中秋节", from = 2027-09-15 },
  { name = "国庆节", from = 2027-10-01, to = 2027-10-07, workdays = [2027-09-26, 2027-10-09] },
]
"""


@pytest.fixture(scope="module")
def cal() -> HolidayCalendar:
    return default_calendar()


def d(text: str) -> date:
    return date.fromisoformat(text)


# -- the packaged data ---------------------------------------------------------------------


def test_the_package_covers_2004_to_2026_with_chinese_names(cal: HolidayCalendar) -> None:
    assert cal.years[0] == 2004
    assert cal.covers(2025) and cal.covers(2026) and not cal.covers(2027)
    assert not cal.covers(2003)
    periods = {(p.name, p.first, p.last) for p in cal.year(2026).holiday_periods()}  # type: ignore[union-attr]
    assert ("春节", d("2026-02-15"), d("2026-02-23")) in periods
    assert ("国庆节", d("2026-10-01"), d("2026-10-07")) in periods
    assert ("中秋节", d("2026-09-25"), d("2026-09-27")) in periods
    # 2025: 中秋 (10-06) falls inside 国庆: one run, named as the notice names it.
    assert ("国庆节、中秋节", d("2025-10-01"), d("2025-10-08")) in {
        (p.name, p.first, p.last)
        for p in cal.year(2025).holiday_periods()  # type: ignore[union-attr]
    }
    assert dict(cal.year(2026).workdays) == {  # type: ignore[union-attr]
        d("2026-01-04"): "元旦",
        d("2026-02-14"): "春节",
        d("2026-02-28"): "春节",
        d("2026-05-09"): "劳动节",
        d("2026-09-20"): "国庆节",
        d("2026-10-10"): "国庆节",
    }
    assert cal.year(2026).source.startswith("chinesecalendar ")  # type: ignore[union-attr]


def test_working_days(cal: HolidayCalendar) -> None:
    assert cal.is_working_day(d("2025-01-27"))  # Monday
    assert not cal.is_working_day(d("2025-01-25"))  # Saturday
    assert cal.is_working_day(d("2025-01-26"))  # Sunday, 春节 make-up day
    assert not cal.is_working_day(d("2025-01-28"))  # Tuesday, 春节
    assert cal.holiday_name(d("2025-01-28")) == "春节"
    assert cal.holiday_name(d("2025-01-27")) is None
    # An uncovered year: weekends only (2027-01-01 is a Friday).
    assert cal.is_working_day(d("2027-01-01"))
    assert not cal.is_working_day(d("2027-01-02"))


# -- deadlines -----------------------------------------------------------------------------


def test_deadline_across_spring_festival_2025(cal: HolidayCalendar) -> None:
    # 2025 春节: off 01-28 (Tue) … 02-04 (Tue); make-up workdays 01-26 (Sun), 02-08 (Sat).
    # Accepted Friday 01-24 (not counted). 01-25 Sat: no. 01-26 Sun (make-up): 1.
    # 01-27 Mon: 2. 01-28 … 02-04: holiday. 02-05 Wed: 3. 02-06 Thu: 4. 02-07 Fri: 5.
    assert cal.add_working_days(d("2025-01-24"), 5) == Deadline(d("2025-02-07"), False)
    # The 6th is the make-up Saturday 02-08; the 7th skips Sunday 02-09 to Monday 02-10.
    assert cal.add_working_days(d("2025-01-24"), 6).date == d("2025-02-08")
    assert cal.add_working_days(d("2025-01-24"), 7).date == d("2025-02-10")


def test_deadline_across_spring_festival_2026(cal: HolidayCalendar) -> None:
    # 2026 春节: off 02-15 (Sun) … 02-23 (Mon); make-up 02-14 (Sat) and 02-28 (Sat).
    # Accepted Thu 02-12. 02-13 Fri: 1. 02-14 Sat (make-up): 2. 02-15 … 02-23: holiday.
    # 02-24 Tue: 3.
    assert cal.add_working_days(d("2026-02-12"), 3) == Deadline(d("2026-02-24"), False)
    # 20 working days from 02-12: 02-13, 02-14 (2), 02-24 … 02-27 (6), 02-28 Sat make-up (7),
    # 03-02 … 03-06 (12), 03-09 … 03-13 (17), 03-16, 03-17, 03-18 (20).
    assert cal.add_working_days(d("2026-02-12"), 20).date == d("2026-03-18")


def test_deadline_across_national_day_2025(cal: HolidayCalendar) -> None:
    # 2025 国庆节、中秋节: off 10-01 (Wed) … 10-08 (Wed); make-up 09-28 (Sun), 10-11 (Sat).
    # Accepted Fri 09-26. 09-27 Sat: no. 09-28 Sun (make-up): 1. 09-29: 2. 09-30: 3.
    # 10-01 … 10-08 off. 10-09 Thu: 4. 10-10 Fri: 5. 10-11 Sat (make-up): 6.
    # 10-13 … 10-17: 7-11. 10-20 … 10-24: 12-16. 10-27 Mon 17, 10-28 18, 10-29 19, 10-30 20.
    assert cal.add_working_days(d("2025-09-26"), 20) == Deadline(d("2025-10-30"), False)
    assert cal.add_working_days(d("2025-09-26"), 6).date == d("2025-10-11")


def test_deadline_across_mid_autumn_and_national_day_2026(cal: HolidayCalendar) -> None:
    # 2026: 中秋节 off 09-25 (Fri) … 09-27 (Sun), no make-up day; 国庆节 off 10-01 (Thu) …
    # 10-07 (Wed), make-up 09-20 (Sun) and 10-10 (Sat).
    # Accepted Fri 09-18. 09-19 Sat: no. 09-20 Sun (make-up): 1. 09-21 … 09-24: 2-5.
    # 09-25 … 09-27 中秋. 09-28: 6. 09-29: 7. 09-30: 8. 10-01 … 10-07 国庆. 10-08 Thu: 9.
    # 10-09 Fri: 10. 10-10 Sat (make-up): 11.
    assert cal.add_working_days(d("2026-09-18"), 10) == Deadline(d("2026-10-09"), False)
    assert cal.add_working_days(d("2026-09-18"), 11).date == d("2026-10-10")


def test_the_day_of_acceptance_is_not_counted(cal: HolidayCalendar) -> None:
    # Accepted Monday 2026-03-02: 1 working day is Tuesday 03-03.
    assert cal.add_working_days(d("2026-03-02"), 1).date == d("2026-03-03")
    # Accepted on a Saturday (online): counting starts Monday.
    assert cal.add_working_days(d("2026-03-07"), 1).date == d("2026-03-09")
    assert cal.add_working_days(d("2026-03-07"), 0) == Deadline(d("2026-03-07"), False)
    with pytest.raises(ValueError):
        cal.add_working_days(d("2026-03-02"), -1)


def test_a_deadline_into_2027_is_provisional_and_counts_weekends_only(
    cal: HolidayCalendar,
) -> None:
    # Accepted Thu 2026-12-24, 10 days. 12-25 Fri: 1. 12-28 … 12-31: 2-5. 2027 is not covered:
    # 01-01 (Fri, surely 元旦 in reality) counts: 6. 01-04 … 01-07: 7-10.
    assert cal.add_working_days(d("2026-12-24"), 10) == Deadline(d("2027-01-07"), True)
    # Not provisional while every day counted is in 2026: 5 days end on Thursday 12-31.
    assert cal.add_working_days(d("2026-12-24"), 5) == Deadline(d("2026-12-31"), False)
    # A weekend day in 2027 walked over is enough: from Thursday 2026-12-31, 1 day is Friday
    # 2027-01-01 — provisional.
    assert cal.add_working_days(d("2026-12-31"), 1) == Deadline(d("2027-01-01"), True)
    assert cal.missing_next_year(d("2026-11-23"))
    assert not cal.missing_next_year(d("2025-11-23"))


def test_the_2027_notice_makes_it_final_and_moves_it(cal: HolidayCalendar) -> None:
    loaded = cal.overlay(parse_calendar_file(EXAMPLE_2027, "2027.toml"))
    assert loaded.covers(2027)
    # Now 2027-01-01 … 01-03 is 元旦: 12-25 (1), 12-28 … 12-31 (2-5), 01-04 … 01-08 (6-10).
    assert loaded.add_working_days(d("2026-12-24"), 10) == Deadline(d("2027-01-08"), False)
    assert not loaded.missing_next_year(d("2026-11-23"))
    # 2027 春节 (example): off 02-05 … 02-13, make-up 02-14 (Sun), 02-20 (Sat).
    # Accepted Thu 02-04: 02-14 Sun: 1. 02-15 … 02-19: 2-6. 02-20 Sat: 7.
    assert loaded.add_working_days(d("2027-02-04"), 7) == Deadline(d("2027-02-20"), False)
    # The default's own years are untouched.
    assert loaded.add_working_days(d("2025-01-24"), 5).date == d("2025-02-07")


def test_a_loaded_year_replaces_the_default_wholly(cal: HolidayCalendar) -> None:
    replaced = cal.overlay([YearCalendar(2026, {d("2026-03-02"): "测试日"}, {}, source="test")])
    assert not replaced.is_working_day(d("2026-03-02"))
    # The packaged 2026 holidays are gone: 2026-10-01 is a plain Thursday now.
    assert replaced.is_working_day(d("2026-10-01"))
    assert not replaced.is_working_day(d("2026-02-14"))  # no longer a make-up Saturday
    assert replaced.year(2026).source == "test"  # type: ignore[union-attr]
    assert cal.is_working_day(d("2026-03-02"))  # the original did not change


# -- pauses, warnings, next working day ----------------------------------------------------


def test_working_days_between_counts_after_start_up_to_end(cal: HolidayCalendar) -> None:
    # (2025-01-27, 2025-02-06]: 01-28 … 02-04 holiday, 02-05 and 02-06 working.
    assert cal.working_days_between(d("2025-01-27"), d("2025-02-06")) == 2
    # (Fri 2026-03-06, Mon 03-09]: only Monday.
    assert cal.working_days_between(d("2026-03-06"), d("2026-03-09")) == 1
    assert cal.working_days_between(d("2026-03-09"), d("2026-03-09")) == 0
    assert cal.working_days_between(d("2026-03-09"), d("2026-03-02")) == 0
    # (2025-09-26, 2025-10-11]: 09-28, 09-29, 09-30, 10-09, 10-10, 10-11.
    assert cal.working_days_between(d("2025-09-26"), d("2025-10-11")) == 6


def test_a_pause_moves_the_deadline_by_the_working_days_it_covered(
    cal: HolidayCalendar,
) -> None:
    # Accepted 2025-01-24, 5 days: 02-07. 补正 from 01-27 to 02-06 covered 2 working days
    # (02-05, 02-06): the deadline is the 7th working day, 02-10 (02-08 is a make-up Saturday).
    paused = cal.working_days_between(d("2025-01-27"), d("2025-02-06"))
    assert cal.add_working_days(d("2025-01-24"), 5 + paused).date == d("2025-02-10")


def test_warning_date(cal: HolidayCalendar) -> None:
    # Deadline Fri 2026-03-13: 3 working days remain from Tue 03-10 (03-11, 03-12, 03-13).
    assert cal.subtract_working_days(d("2026-03-13"), 3) == d("2026-03-10")
    # Deadline Mon 2026-03-16, 1 day: on Friday 03-13 only Monday remains.
    assert cal.subtract_working_days(d("2026-03-16"), 1) == d("2026-03-13")
    # Deadline 2025-02-07, 3 days: 02-05 … 02-07 are the last three; the holiday lies before
    # them, so the warning starts on the working day before it, Monday 01-27.
    assert cal.subtract_working_days(d("2025-02-07"), 3) == d("2025-01-27")
    assert cal.subtract_working_days(d("2026-03-13"), 0) == d("2026-03-13")


def test_subtract_inverts_add_on_working_days(cal: HolidayCalendar) -> None:
    day = d("2024-12-01")
    while day < d("2026-12-31"):
        if cal.is_working_day(day):
            for n in (1, 3, 5):
                start = cal.subtract_working_days(day, n)
                assert cal.is_working_day(start)
                assert cal.add_working_days(start, n).date == day
                assert cal.working_days_between(start, day) == n
        day += timedelta(days=1)


def test_next_working_day(cal: HolidayCalendar) -> None:
    assert cal.next_working_day(d("2025-01-27")) == d("2025-02-05")  # over 春节
    assert cal.next_working_day(d("2025-01-24")) == d("2025-01-26")  # make-up Sunday
    assert cal.next_working_day(d("2026-03-02")) == d("2026-03-03")


# -- calendar data that contradicts itself ------------------------------------------------


def test_year_calendar_invariants() -> None:
    with pytest.raises(CalendarError):
        YearCalendar(2027, {d("2026-12-31"): "元旦"}, {})
    with pytest.raises(CalendarError):
        YearCalendar(2027, {}, {d("2027-02-15"): "春节"})  # a Monday
    with pytest.raises(CalendarError):
        YearCalendar(2027, {d("2027-02-06"): "春节"}, {d("2027-02-06"): "春节"})
    with pytest.raises(CalendarError):
        HolidayCalendar([YearCalendar(2027, {}, {}), YearCalendar(2027, {}, {})])
    source = {d("2027-01-01"): "元旦"}
    year = YearCalendar(2027, source, {})
    source[d("2027-01-04")] = "元旦"
    assert d("2027-01-04") not in year.holidays  # a copy, not the caller's dict


# -- the calendar file ---------------------------------------------------------------------


def test_the_example_in_the_docs_is_the_example_tested() -> None:
    block = re.search(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert block is not None
    assert parse_calendar_file(block.group(1)) == parse_calendar_file(EXAMPLE_2027)


def test_parse_the_example() -> None:
    [year] = parse_calendar_file(EXAMPLE_2027, "2027.toml")
    assert year.year == 2027
    assert year.source == "2027.toml — 示例（非官方）：2027年部分节假日安排"
    assert len(year.holidays) == 3 + 9 + 3 + 5 + 1 + 1 + 7
    assert year.holidays[d("2027-06-09")] == "端午节"
    assert dict(year.workdays) == {
        d("2027-02-14"): "春节",
        d("2027-02-20"): "春节",
        d("2027-05-08"): "劳动节",
        d("2027-09-26"): "国庆节",
        d("2027-10-09"): "国庆节",
    }


def test_array_of_tables_is_the_same_data() -> None:
    longhand = """
    [[years]]
    year = 2027
    [[years.holidays]]
    name = "元旦"
    from = 2027-01-01
    to = 2027-01-03
    """
    [year] = parse_calendar_file(longhand)
    assert sorted(year.holidays) == [d("2027-01-01"), d("2027-01-02"), d("2027-01-03")]


BAD_FILES = {
    "syntax": ("[[years]\nyear = 2027", "TOML 语法错误"),
    "no years": ("title = 'x'", "不认识的键 title"),
    "empty": ("", "至少一个 [[years]]"),
    "year not int": ('[[years]]\nyear = "2027"\nholidays = []', "整数年份"),
    "year typo": ("[[years]]\nyear = 20277\nholidays = []", "整数年份"),
    "no holidays": ("[[years]]\nyear = 2027\nholidays = []", "至少一项"),
    "quoted date": (
        '[[years]]\nyear = 2027\nholidays = [{name = "元旦", from = "2027-01-01"}]',
        "不加引号",
    ),
    "datetime": (
        '[[years]]\nyear = 2027\nholidays = [{name = "元旦", from = 2027-01-01T00:00:00}]',
        "不加引号",
    ),
    "other year": (
        '[[years]]\nyear = 2027\nholidays = [{name = "元旦", from = 2026-12-31, to = 2027-01-02}]',
        "2026-12-31 不在 2027 年内",
    ),
    "reversed": (
        '[[years]]\nyear = 2027\nholidays = [{name = "春节", from = 2027-02-13, to = 2027-02-05}]',
        "早于开始日",
    ),
    "too long": (
        '[[years]]\nyear = 2027\nholidays = [{name = "春节", from = 2027-02-01, to = 2027-03-01}]',
        "超过 15 天",
    ),
    "overlap": (
        "[[years]]\nyear = 2027\nholidays = ["
        '{name = "国庆节", from = 2027-10-01, to = 2027-10-07},'
        '{name = "中秋节", from = 2027-10-07}]',
        "2027-10-07 已属于国庆节假期",
    ),
    "weekday make-up": (
        '[[years]]\nyear = 2027\nholidays = [{name = "春节", from = 2027-02-05, to = 2027-02-13,'
        " workdays = [2027-02-15]}]",
        "2027-02-15 是星期一",
    ),
    "make-up inside holiday": (
        '[[years]]\nyear = 2027\nholidays = [{name = "春节", from = 2027-02-05, to = 2027-02-13,'
        " workdays = [2027-02-06]}]",
        "既是春节假日又是春节调休上班日",
    ),
    "make-up in other year": (
        '[[years]]\nyear = 2027\nholidays = [{name = "元旦", from = 2027-01-01,'
        " workdays = [2026-12-27]}]",
        "2026-12-27 不在 2027 年内",
    ),
    "typo key": (
        '[[years]]\nyear = 2027\nholidays = [{name = "元旦", form = 2027-01-01}]',
        "不认识的键 form",
    ),
    "no name": ("[[years]]\nyear = 2027\nholidays = [{from = 2027-01-01}]", "节日名称"),
    "year twice": (
        '[[years]]\nyear = 2027\nholidays = [{name = "元旦", from = 2027-01-01}]\n'
        '[[years]]\nyear = 2027\nholidays = [{name = "元旦", from = 2027-01-01}]',
        "2027 年重复出现",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_with_a_clear_reason(case: str) -> None:
    text, expected = BAD_FILES[case]
    with pytest.raises(CalendarFileError) as info:
        parse_calendar_file(text)
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_every_problem_is_reported_with_its_place() -> None:
    text = (
        "[[years]]\nyear = 2027\nholidays = ["
        '{name = "春节", from = 2027-02-05, to = 2027-02-13, workdays = [2027-02-15]},'
        '{name = "国庆节", from = 2026-10-01, to = 2027-10-07}]'
    )
    with pytest.raises(CalendarFileError) as info:
        parse_calendar_file(text)
    assert info.value.problems == [
        "years[0] (2027).holidays[0].workdays[0]: 2027-02-15 是星期一：调休上班日须为周六或周日"
        " (a make-up workday must be a Saturday or Sunday)",
        "years[0] (2027).holidays[1].from: 2026-10-01 不在 2027 年内 (not in 2027)",
    ]
