"""Case follow-ups on two real nodes: the application form checked against the item's form
fields, 容缺 catch-up (deadline, warning, overdue, relay, supervision), the warning lead fixed
at 受理, deadlines across 春节 and 国庆节 with their 调休 days computed alike on both nodes,
and the maintained supervision counts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from node.appkeys import CASES
from node.cases.deadlines import TimeStatus, compute, time_status
from node.cases.models import case_due_counts, case_status_counts, cases
from node.cases.queries import rebuild_status_counts, status_count_faults
from node.catalog.loading import load_catalog_file
from node.clock import CHINA, today_in_china
from node.workdays.defaults import default_calendar
from tests.support.api import ApiClient, pdf
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.nodes import RunningNode
from tests.support.regions import SAMPLES, materials_for, start_regions
from tests.support.waiting import wait_until

ITEM = "430400-XK-0001"  # 衡阳市: promised 2 working days, warning 1 day, M04 容缺, M05 告知承诺
PERSON = {
    "kind": "person",
    "name": "孙丽",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13973900004",
}


def d(text: str) -> date:
    return date.fromisoformat(text)


def at(day: date) -> Callable[[], float]:
    """A clock stopped at 10:00 China time on ``day``."""
    moment = datetime(day.year, day.month, day.day, 10, 0, tzinfo=CHINA).timestamp()
    return lambda: moment


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    nodes = await start_regions(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    yield nodes
    for node in nodes:
        await node.stop()


async def apply(clerk: ApiClient, **form: Any) -> dict[str, Any]:
    item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
    created = await clerk.ok(
        "POST",
        "/api/v1/cases",
        {
            "item_code": ITEM,
            "mode": "proxy",
            "applicant": PERSON,
            "form": form_for(item, **form),
            "materials": await materials_for(clerk, item),
            "identity_verified": True,
            "delivery": {"method": "window", "address": None},
        },
        status=201,
    )
    return dict(created["case"])


async def find(client: ApiClient, case_no: str) -> dict[str, Any] | None:
    listing = await client.ok("GET", f"/api/v1/cases?q={case_no}")
    matches = [c for c in listing["cases"] if c["case_no"] == case_no]
    return await client.ok("GET", f"/api/v1/cases/{matches[0]['id']}") if matches else None


async def until(client: ApiClient, case_no: str, test: Callable[[dict[str, Any]], bool]) -> Any:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen["case"] = await find(client, case_no)
        return seen["case"] is not None and test(seen["case"])

    await wait_until(reached)
    return seen["case"]


async def test_the_form_is_checked_against_the_items_form_fields(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
        status, body = await clerk.call(
            "POST",
            "/api/v1/cases",
            {
                "item_code": ITEM,
                "mode": "proxy",
                "applicant": PERSON,
                "form": {
                    "project_name": "  ",
                    "construction_stage": "地下室",
                    "floor_area_m2": "很大",
                    "contract_price_wan": True,
                    "planned_start": "2026-13-01",
                    "colour": "红",
                },
                "materials": await materials_for(clerk, item),
                "identity_verified": True,
                "delivery": {"method": "window", "address": None},
            },
        )
        assert (status, body["error"]) == (400, "invalid_input")
        assert {(f["field"], f["code"]) for f in body["fields"]} == {
            ("form.project_name", "required"),
            ("form.project_code", "required"),
            ("form.construction_stage", "invalid_choice"),
            ("form.floor_area_m2", "invalid_number"),
            ("form.contract_price_wan", "invalid_number"),
            ("form.builder", "required"),
            ("form.planned_start", "invalid_date"),
            ("form.colour", "unknown_field"),
        }  # supervision_unit is optional: not listed
        messages = {f["field"]: f["message"] for f in body["fields"]}
        assert "土方开挖与基坑支护" in messages["form.construction_stage"]
        assert "建筑面积" in messages["form.floor_area_m2"]
        async with shaoyang.db.read() as conn:
            assert (await conn.execute(select(cases.c.id))).first() is None

        # A number written as text is taken as a number, and travels as one.
        created = await apply(
            clerk, floor_area_m2="12800.5", project_name=" 宏达广场 ", supervision_unit=""
        )
        approver = await ApiClient(hengyang.url, http).login("approver")
        there = await until(approver, created["case_no"], lambda c: True)
        form = there["application"]["form"]
        assert form["floor_area_m2"] == 12800.5 and form["project_name"] == "宏达广场"
        assert "supervision_unit" not in form


async def test_deferred_material_catch_up_warns_goes_overdue_and_travels(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    window = shaoyang.app[CASES]  # type: ignore[index]
    calendar = await window.calendar()
    today = today_in_china()
    # Taken 40 days ago: the 10 working days to hand in M04 are long over.
    window.clock = at(today - timedelta(days=40))
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        late = await apply(clerk)
        # Taken on the day whose catch-up deadline is the first working day from today: the
        # item's 1-day warning lead has started.
        day = today
        while calendar.add_working_days(day, window.deferred_days).date > today:
            day -= timedelta(days=1)
        if calendar.add_working_days(day, window.deferred_days).date < today:
            day += timedelta(days=1)
        window.clock = at(day)
        soon = await apply(clerk)
        window.clock = time.time
        late = await clerk.ok("GET", f"/api/v1/cases/{late['id']}")
        soon = await clerk.ok("GET", f"/api/v1/cases/{soon['id']}")
        assert late["deferred_status"] == "overdue"
        assert soon["deferred_status"] == "warning", (day, soon["deferred_until"])
        assert d(soon["deferred_until"]) >= today

        supervisors = [
            await ApiClient(node.url, http).login("supervisor") for node in (shaoyang, hengyang)
        ]
        approver = await ApiClient(hengyang.url, http).login("approver")
        for case in (late, soon):
            there = await until(approver, case["case_no"], lambda c: True)
            assert there["deferred_until"] == case["deferred_until"]
            assert there["deferred_status"] == case["deferred_status"]
        for supervisor in supervisors:
            board = await supervisor.ok("GET", "/api/v1/supervision")
            assert [c["case_no"] for c in board["deferred_overdue"]] == [late["case_no"]]
            assert [c["case_no"] for c in board["deferred_warning"]] == [soon["case_no"]]

        # Catching up: only an outstanding 容缺 material, with its file.
        scan = await clerk.upload(pdf("施工现场安全措施（补交）"), "M04.pdf")
        refused = await clerk.act(
            late["id"], "catch_up", {"materials": [{"code": "M01", "blob": scan["sha256"]}]}, 400
        )
        assert [(f["field"], f["code"]) for f in refused["fields"]] == [
            ("materials[0].code", "not_deferred")
        ]
        refused = await clerk.act(
            late["id"], "catch_up", {"materials": [{"code": "M04", "blob": "0" * 64}]}, 400
        )
        assert refused["fields"][0]["code"] == "file_missing"
        # Only the window takes materials; the handling region may not.
        there = await find(approver, late["case_no"])
        assert there is not None
        wrong = await approver.act(there["id"], "catch_up", {}, 403)
        assert wrong["error"] == "wrong_side"

        caught = await clerk.act(
            late["id"], "catch_up", {"materials": [{"code": "M04", "blob": scan["sha256"]}]}
        )
        assert caught["deferred_until"] is None and caught["deferred_status"] is None
        event = caught["events"][-1]
        assert event["action"] == "catch_up" and event["data"]["overdue"] is True
        assert event["data"]["envelope"]["typ"] == "case.supplemented"
        there = await until(approver, late["case_no"], lambda c: c["deferred_until"] is None)
        assert there["deferred"][0]["blob"] == scan["sha256"]
        assert there["status"] == "forwarded"  # the catch-up changes no state
        for supervisor in supervisors:
            board = await supervisor.ok("GET", "/api/v1/supervision")
            assert board["deferred_overdue"] == []
            assert [c["case_no"] for c in board["deferred_warning"]] == [soon["case_no"]]

        # Every change kept the maintained counts equal to a recount, on both nodes.
        for node, supervisor in zip((shaoyang, hengyang), supervisors, strict=True):
            async with node.db.read() as conn:
                assert await status_count_faults(conn) == []
            board = await supervisor.ok("GET", "/api/v1/supervision")
            partner = "430400" if node is shaoyang else "430523"
            assert board["partners"][partner]["by_status"] == {"forwarded": 2}


async def test_status_counts_are_rebuilt_after_a_bulk_change(pair: list[RunningNode]) -> None:
    shaoyang, _hengyang = pair
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        first = await apply(clerk)
        await clerk.act(first["id"], "withdraw", {"reason": "申请人另行办理"})

        async def withdrawn() -> bool:
            case = await clerk.ok("GET", f"/api/v1/cases/{first['id']}")
            return bool(case["status"] == "withdrawn")

        await wait_until(withdrawn)
    async with shaoyang.db.read() as conn:
        assert await status_count_faults(conn) == []
        counts = dict(
            (
                await conn.execute(
                    select(case_status_counts.c.status, case_status_counts.c.count).where(
                        case_status_counts.c.count != 0
                    )
                )
            ).all()
        )
    assert counts == {"withdrawn": 1}
    # A bulk change outside the service (an import, a repair) is found and recounted.
    async with shaoyang.db.write() as conn:
        await conn.execute(update(cases).values(status="delivered"))
    async with shaoyang.db.read() as conn:
        assert await status_count_faults(conn) == [
            ("430400", "delivered", 1, 0),
            ("430400", "withdrawn", 0, 1),
        ]
    async with shaoyang.db.write() as conn:
        assert await rebuild_status_counts(conn) == 1
    async with shaoyang.db.read() as conn:
        assert await status_count_faults(conn) == []


async def test_spring_festival_deadline_and_warning_are_fixed_at_acceptance_on_both_nodes(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    shaoyang, hengyang = pair
    window, handling = shaoyang.app[CASES], hengyang.app[CASES]  # type: ignore[index]
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        created = await apply(clerk)
        case_no = created["case_no"]
        incoming = await until(approver, case_no, lambda c: True)

        # 受理 on Thursday 2026-02-12, 2 working days: Fri 02-13 and Sat 02-14 (a 春节 调休
        # workday). The warning lead is the item's 1 day: from Fri 02-13.
        handling.clock = at(d("2026-02-12"))
        accepted = await approver.act(incoming["id"], "accept")
        assert (accepted["promised_date"], accepted["deadline"]) == ("2026-02-14", "2026-02-14")
        assert (accepted["warning_from"], accepted["warning_days"]) == ("2026-02-13", 1)
        mirrored = await until(clerk, case_no, lambda c: c["status"] == "accepted")
        for key in ("promised_date", "deadline", "warning_from", "warning_days"):
            assert mirrored[key] == accepted[key], key

        # The item's warning lead changes later: cases already accepted keep theirs.
        text = (SAMPLES / "430400.toml").read_text(encoding="utf-8")
        changed = tmp_path / "430400.toml"
        changed.write_text(text.replace("warning_days = 1", "warning_days = 5", 1), "utf-8")
        await load_catalog_file(hengyang.db, "430400", changed)
        assert (await approver.ok("GET", f"/api/v1/catalog/{ITEM}"))["warning_days"] == 5

        # 补正 from Fri 02-13 (the clock stops) to Tue 02-24, across the whole 春节 holiday
        # (02-15 … 02-23). The paused working days are 02-14 and 02-24: deadline Wed 02-25.
        handling.clock = at(d("2026-02-13"))
        await approver.act(
            incoming["id"],
            "request_supplement",
            {"items": [{"name": "施工合同", "requirement": "请提供盖章的施工合同"}]},
        )
        relayed = await until(clerk, case_no, lambda c: c["status"] == "supplement_pending")
        assert relayed["paused"] and relayed["time_status"] == "warning"  # as of 02-13
        window.clock = at(d("2026-02-24"))
        handling.clock = at(d("2026-02-25"))  # a day later: the window's date travels
        contract = await clerk.upload(pdf("施工合同"), "施工合同.pdf")
        await clerk.act(
            relayed["id"],
            "supplement",
            {"materials": [{"name": "施工合同", "blob": contract["sha256"]}]},
        )
        resumed = await until(approver, case_no, lambda c: c["status"] == "accepted")
        here = await clerk.ok("GET", f"/api/v1/cases/{relayed['id']}")
        for case in (resumed, here):
            assert case["pauses"][0][:2] == ["2026-02-13", "2026-02-24"]
            assert (case["promised_date"], case["deadline"]) == ("2026-02-14", "2026-02-25")
            # Still the 1-day lead fixed at 受理 (5 days would start the warning on 02-11).
            assert case["warning_from"] == "2026-02-24"
            assert case["time_status"] == here["time_status"]
    # The maintained counts followed 受理, the pause and the moved deadline on both nodes.
    for node in pair:
        async with node.db.read() as conn:
            assert await status_count_faults(conn) == []
            due = (
                await conn.execute(select(case_due_counts).where(case_due_counts.c.count != 0))
            ).all()
        partner = "430400" if node is shaoyang else "430523"
        # (deadline, warning date, pause start: "" once the clock runs again)
        assert [tuple(r) for r in due] == [(partner, "2026-02-25", "2026-02-24", "", 1)]


def test_national_day_deadline_with_make_up_days_and_a_pause() -> None:
    calendar = default_calendar()
    # 2025 国庆节、中秋节: off 10-01 … 10-08; make-up workdays Sun 09-28 and Sat 10-11.
    # 受理 Fri 09-26, 5 days: 09-28 (make-up), 09-29, 09-30, 10-09, 10-10.
    fields = compute(calendar, accepted_on=d("2025-09-26"), limit_days=5, pauses=[], warning_days=2)
    assert (fields.promised_date, fields.deadline) == ("2025-10-10", "2025-10-10")
    # 补正 from 09-29 to 10-10: the paused working days are 09-30, 10-09 and 10-10, so three
    # more: Sat 10-11 (make-up), Mon 10-13, Tue 10-14. The promised date does not move.
    fields = compute(
        calendar,
        accepted_on=d("2025-09-26"),
        limit_days=5,
        pauses=[["2025-09-29", "2025-10-10", "补正"]],
        warning_days=2,
    )
    assert (fields.promised_date, fields.deadline) == ("2025-10-10", "2025-10-14")
    # Two working days before the deadline (10-13, 10-14): the warning starts on the make-up
    # Saturday 10-11.
    assert fields.warning_from == "2025-10-11" and not fields.provisional

    def status(today: str, paused_since: str | None = None) -> TimeStatus:
        return time_status(
            deadline=fields.deadline,
            warning_from=fields.warning_from,
            paused_since=paused_since,
            today=d(today),
        )

    assert status("2025-10-10") is TimeStatus.NORMAL
    assert status("2025-10-11") is TimeStatus.WARNING
    assert status("2025-10-14") is TimeStatus.WARNING
    assert status("2025-10-15") is TimeStatus.OVERDUE
    # A paused case is judged as of the day its pause began.
    assert status("2025-11-30", paused_since="2025-10-13") is TimeStatus.WARNING


def test_a_short_time_limit_keeps_a_normal_period() -> None:
    """A 3-working-day item with the usual 3-day warning lead is not 预警 from the day it is
    accepted: the lead is at most half the limit."""
    calendar = default_calendar()
    accepted_on = date(2026, 12, 7)  # a Monday, no holiday that week
    fields = compute(calendar, accepted_on=accepted_on, limit_days=3, pauses=[], warning_days=3)
    assert fields.deadline == "2026-12-10"
    assert fields.warning_from == "2026-12-09"
    assert (
        time_status(
            deadline=fields.deadline,
            warning_from=fields.warning_from,
            paused_since=None,
            today=accepted_on,
        )
        is TimeStatus.NORMAL
    )
    # A long limit keeps the item's whole lead: 3 working days before 2027-01-04.
    long = compute(calendar, accepted_on=accepted_on, limit_days=20, pauses=[], warning_days=3)
    assert (long.deadline, long.warning_from) == ("2027-01-04", "2026-12-30")
