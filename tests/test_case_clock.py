"""The case clock on two real nodes: a paused case judged as of the day its pause began in
the inbox filter, the detail and supervision's counts alike; the ``[cases]`` settings of
tongban.toml; 容缺 and 差评 deadlines recomputed when a calendar load brings their year; the
ratings and the 补正 history in the case detail; the 补正 deadline in the citizen's timeline."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.appkeys import CASES
from node.cases.queries import status_count_faults
from node.cases.recompute import recompute_provisional
from node.catalog.partner_cache import refresh_partner_catalog
from node.clock import today_in_china
from node.config import CaseSettings, ConfigError, NodeConfig
from node.workdays.service import load_calendar_file
from tests.support.api import ApiClient, pdf
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.nodes import RunningNode, make_configs
from tests.support.regions import materials_for, provision
from tests.test_case_followups import PERSON, apply, at, d, find, until

NOTICE = {"items": [{"name": "施工合同", "requirement": "请提供盖章的施工合同"}]}
PAUSE = {"kind": "pause", "reason": "组织专家评审", "procedure": "expert_review"}
CALENDAR_2027 = '[[years]]\nyear = 2027\nholidays = [\n  { name = "元旦", from = 2027-01-01, to = 2027-01-03 },\n]\n'


async def start_pair(
    tmp: Path, databases: DatabaseFactory, *, window_toml: str = ""
) -> list[RunningNode]:
    """邵阳县 (the window) and 衡阳市 (handling), ``window_toml`` added to the window's config."""
    configs = await make_configs(tmp, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    if window_toml:
        path = configs[0].dir / "tongban.toml"
        path.write_text(path.read_text("utf-8") + window_toml, "utf-8")
        configs[0] = NodeConfig.load(configs[0].dir)
    for config in configs:
        await provision(config)
    nodes = [await RunningNode(c).start() for c in configs]
    for node, other in ((nodes[0], nodes[1]), (nodes[1], nodes[0])):
        await refresh_partner_catalog(node.db, node.fed.trust, node.fed.client, other.config.region)
    return nodes


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    nodes = await start_pair(tmp_path, databases)
    yield nodes
    for node in nodes:
        await node.stop()


async def listed(client: ApiClient, time_status: str) -> dict[str, str]:
    listing = await client.ok("GET", f"/api/v1/cases?time_status={time_status}")
    return {c["case_no"]: c["time_status"] for c in listing["cases"]}


async def test_a_paused_case_is_judged_as_of_its_pause_start_everywhere(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    window, handling = shaoyang.app[CASES], hengyang.app[CASES]  # type: ignore[index]
    calendar = await handling.calendar()
    today = today_in_china()
    # Accepted some six weeks ago: 2 working days, the warning from the 1st.
    accepted_on = calendar.next_working_day(today - timedelta(days=42))
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        supervisors = [await ApiClient(n.url, http).login("supervisor") for n in pair]
        window.clock = handling.clock = at(accepted_on)
        taken: dict[str, dict[str, Any]] = {}
        for expected in ("normal", "warning", "overdue"):
            created = await apply(clerk)
            there = await until(approver, created["case_no"], lambda c: True)
            taken[expected] = await approver.act(there["id"], "accept")
        normal, warning, overdue = taken["normal"], taken["warning"], taken["overdue"]
        assert d(normal["warning_from"]) > accepted_on
        # Paused before its warning day (补正 the day of 受理), on its warning day, and the day
        # after its deadline (special procedures, 特别程序).
        await approver.act(normal["id"], "request_supplement", NOTICE)
        handling.clock = at(d(warning["warning_from"]))
        await approver.act(warning["id"], "progress", PAUSE)
        handling.clock = at(d(overdue["deadline"]) + timedelta(days=1))
        await approver.act(overdue["id"], "progress", PAUSE)
        window.clock = handling.clock = time.time
        expected = {taken[ts]["case_no"]: ts for ts in taken}
        for case_no in expected:
            await until(clerk, case_no, lambda c: c["paused"])
        # Every deadline has long passed: judged by today, all three would be overdue.
        assert all(d(c["deadline"]) < today for c in taken.values())

        for client in (clerk, approver):
            for ts in ("normal", "warning", "overdue"):
                assert await listed(client, ts) == {no: ts for no, t in expected.items() if t == ts}
            for case_no, ts in expected.items():
                case = await find(client, case_no)
                assert case is not None and case["paused"]
                assert case["time_status"] == ts, case_no
        assert (await find(clerk, normal["case_no"]) or {})["paused_since"] == (
            accepted_on.isoformat()
        )
        for supervisor in supervisors:
            board = await supervisor.ok("GET", "/api/v1/supervision")
            (entry,) = board["partners"].values()
            assert entry["by_time_status"] == {"normal": 1, "warning": 1, "overdue": 1}
            assert [c["case_no"] for c in board["overdue"]] == [overdue["case_no"]]
            assert [c["case_no"] for c in board["warning"]] == [warning["case_no"]]

        # The supplement comes in today: the clock runs again, and the deadline moves by the
        # paused working days, after the pause start up to and including today.
        here = await find(clerk, normal["case_no"])
        assert here is not None
        contract = await clerk.upload(pdf("施工合同"), "施工合同.pdf")
        await clerk.act(
            here["id"],
            "supplement",
            {"materials": [{"name": "施工合同", "blob": contract["sha256"]}]},
        )
        paused_days = calendar.working_days_between(accepted_on, today)
        moved = calendar.add_working_days(accepted_on, 2 + paused_days).date.isoformat()
        for client in (clerk, approver):
            case = await until(client, normal["case_no"], lambda c: c["status"] == "accepted")
            assert (case["deadline"], case["paused"], case["paused_since"]) == (moved, False, None)
            assert case["promised_date"] == normal["promised_date"]
            # Judged by today now, the same in the detail and the inbox filter.
            assert (await listed(client, case["time_status"]))[case["case_no"]] == (
                case["time_status"]
            )
        for supervisor in supervisors:
            board = await supervisor.ok("GET", "/api/v1/supervision")
            (entry,) = board["partners"].values()
            assert sum(entry["by_time_status"].values()) == 3
            assert entry["by_time_status"]["overdue"] == 1
    for node in pair:
        async with node.db.read() as conn:
            assert await status_count_faults(conn) == []


async def test_a_supplement_asked_during_a_hearing_keeps_one_pause(
    pair: list[RunningNode],
) -> None:
    """One pause at a time: 补正 asked while a special procedure has stopped the clock opens
    no second pause, the supplement coming in does not end the hearing's pause, and resuming
    moves the deadline by the whole span once."""
    shaoyang, hengyang = pair
    window, handling = shaoyang.app[CASES], hengyang.app[CASES]  # type: ignore[index]
    calendar = await handling.calendar()
    accepted_on = calendar.next_working_day(today_in_china() - timedelta(days=60))
    hearing_on = calendar.add_working_days(accepted_on, 1).date
    asked_on = calendar.add_working_days(accepted_on, 3).date
    supplied_on = calendar.add_working_days(accepted_on, 5).date
    resumed_on = calendar.add_working_days(accepted_on, 8).date
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        window.clock = handling.clock = at(accepted_on)
        created = await apply(clerk)
        there = await until(approver, created["case_no"], lambda c: True)
        accepted = await approver.act(there["id"], "accept")
        handling.clock = at(hearing_on)
        await approver.act(there["id"], "progress", PAUSE)
        handling.clock = at(asked_on)
        asked = await approver.act(there["id"], "request_supplement", NOTICE)
        assert (asked["status"], asked["paused"], asked["paused_since"]) == (
            "supplement_pending",
            True,
            hearing_on.isoformat(),
        )
        here = await until(clerk, created["case_no"], lambda c: c["status"] == "supplement_pending")
        window.clock = at(supplied_on)
        contract = await clerk.upload(pdf("施工合同"), "施工合同.pdf")
        await clerk.act(
            here["id"],
            "supplement",
            {"materials": [{"name": "施工合同", "blob": contract["sha256"]}]},
        )
        for client in (clerk, approver):
            case = await until(client, created["case_no"], lambda c: c["status"] == "accepted")
            # The hearing goes on: still paused from its first day, the deadline unmoved.
            assert (case["paused"], case["paused_since"], case["deadline"]) == (
                True,
                hearing_on.isoformat(),
                accepted["deadline"],
            )
        handling.clock = at(resumed_on)
        resume = {"kind": "resume", "reason": "专家评审结束"}
        resumed = await approver.act(there["id"], "progress", resume)
        paused_days = calendar.working_days_between(hearing_on, resumed_on)
        moved = calendar.add_working_days(
            accepted_on, int(accepted["time_limit_days"]) + paused_days
        ).date.isoformat()
        assert (resumed["paused"], resumed["paused_since"], resumed["deadline"]) == (
            False,
            None,
            moved,
        )
        assert len(resumed["pauses"]) == 1
        window.clock = handling.clock = time.time
        case = await until(clerk, created["case_no"], lambda c: not c["paused"])
        assert case["deadline"] == moved


def test_case_settings_are_read_from_tongban_toml_and_checked(tmp_path: Path) -> None:
    base = {"region": "430400", "name": "衡阳市", "url": "http://127.0.0.1:8400"}
    assert NodeConfig.from_dict(tmp_path, base).cases == CaseSettings(10, 10)
    config = NodeConfig.from_dict(
        tmp_path, {**base, "cases": {"deferred_days": 5, "rectification_days": 15}}
    )
    assert config.cases == CaseSettings(deferred_days=5, rectification_days=15)
    for bad in (
        {"deferred_days": 4},
        {"deferred_days": 31},
        {"deferred_days": "10"},
        {"deferred_days": 10.0},
        {"deferred_days": True},
        {"rectification_days": 16},
        {"supplement_days": 5},
    ):
        with pytest.raises(ConfigError, match=r"\[cases\]"):
            NodeConfig.from_dict(tmp_path, {**base, "cases": bad})
    (tmp_path / "tongban.toml").write_text(
        'region = "430400"\nname = "衡阳市"\nurl = "http://127.0.0.1:8400"\n\n'
        "[cases]\ndeferred_days = 0\n",
        "utf-8",
    )
    with pytest.raises(ConfigError, match="deferred_days = 0"):
        NodeConfig.load(tmp_path)


async def test_a_node_counts_the_catch_up_deadline_from_its_cases_settings(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    nodes = await start_pair(tmp_path, databases, window_toml="\n[cases]\ndeferred_days = 5\n")
    try:
        shaoyang, hengyang = nodes
        window = shaoyang.app[CASES]  # type: ignore[index]
        assert (window.deferred_days, hengyang.app[CASES].deferred_days) == (5, 10)  # type: ignore[index]
        calendar = await window.calendar()
        async with aiohttp.ClientSession() as http:
            clerk = await ApiClient(shaoyang.url, http).login("clerk")
            approver = await ApiClient(hengyang.url, http).login("approver")
            created = await apply(clerk)
            five = calendar.add_working_days(today_in_china(), 5).date.isoformat()
            assert created["deferred_until"] == five
            there = await until(approver, created["case_no"], lambda c: True)
            assert there["deferred_until"] == five
            assert [m["deferred_until"] for m in there["deferred"]] == [five]
    finally:
        for node in nodes:
            await node.stop()


async def test_catch_up_and_rectification_deadlines_are_recomputed_when_their_year_is_loaded(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    shaoyang, hengyang = pair
    window, handling = shaoyang.app[CASES], hengyang.app[CASES]  # type: ignore[index]
    # Thursday 2026-12-24, before 2027 is loaded: 10 working days on weekends alone end on
    # 2027-01-07 (01-01 counted); with 元旦 (01-01 … 01-03) loaded, on 2027-01-08.
    window.clock = handling.clock = at(d("2026-12-24"))
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        supervisor = await ApiClient(hengyang.url, http).login("supervisor")
        created = await apply(clerk)
        case_no = created["case_no"]
        assert (created["deferred_until"], created["deferred_provisional"]) == ("2027-01-07", True)
        there = await until(approver, case_no, lambda c: True)
        # The catch-up is the window's business: the handling node keeps the window's date as
        # relayed, never provisional there and never recounted on its own calendar (the two
        # nodes may have loaded different years).
        assert (there["deferred_until"], there["deferred_provisional"]) == ("2027-01-07", False)
        await approver.act(there["id"], "accept")
        await until(clerk, case_no, lambda c: c["status"] == "accepted")
        await clerk.act(
            created["id"],
            "rate",
            {"level": 1, "stage": "accept", "channel": 4, "comment": "窗口排队时间太长"},
        )
        there = await until(approver, case_no, lambda c: bool(c["ratings"]))
        (rating,) = there["ratings"]
        assert (rating["level"], rating["comment"], rating["open"]) == (1, "窗口排队时间太长", True)
        assert (rating["rectification_due"], rating["rectification_provisional"]) == (
            "2027-01-07",
            True,
        )
        assert there["rectification_due"] == "2027-01-07"
        window.clock = handling.clock = time.time

        calendar_file = tmp_path / "2027.toml"
        calendar_file.write_text(CALENDAR_2027, "utf-8")
        for node in pair:
            assert await load_calendar_file(
                node.db, calendar_file, loaded_by="test", after_load=[recompute_provisional]
            ) == [2027]
        here = await clerk.ok("GET", f"/api/v1/cases/{created['id']}")
        there = await approver.ok("GET", f"/api/v1/cases/{there['id']}")
        assert (here["deferred_until"], here["deferred_provisional"]) == ("2027-01-08", False)
        assert [m["deferred_until"] for m in here["deferred"]] == ["2027-01-08"]
        assert (there["deferred_until"], there["deferred_provisional"]) == ("2027-01-07", False)
        (rating,) = there["ratings"]
        assert (rating["rectification_due"], rating["rectification_provisional"]) == (
            "2027-01-08",
            False,
        )
        assert there["rectification_due"] == "2027-01-08"
        # The window keeps the rating without a rectification deadline (the handling region's).
        assert [r["rectification_due"] for r in here["ratings"]] == [None]
        board = await supervisor.ok("GET", "/api/v1/supervision")
        assert [
            (r["case_no"], r["rectification_due"], r["rectification_provisional"])
            for r in board["open_rectifications"]
        ] == [(case_no, "2027-01-08", False)]


async def test_supplement_notices_are_kept_and_the_citizen_sees_each_deadline(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        item = await clerk.ok("GET", "/api/v1/catalog/430400-XK-0001")
        created = await clerk.ok(
            "POST",
            "/api/v1/cases",
            {
                "item_code": "430400-XK-0001",
                "mode": "proxy",
                "applicant": PERSON,
                "form": form_for(item),
                "materials": await materials_for(clerk, item),
                "identity_verified": True,
                "delivery": {"method": "window", "address": None},
            },
            status=201,
        )
        case_no, code = created["case"]["case_no"], created["query_code"]
        there = await until(approver, case_no, lambda c: True)
        await approver.act(there["id"], "accept")
        first = await approver.act(there["id"], "request_supplement", NOTICE)
        first_deadline = first["details"]["supplement"]["deadline"]
        here = await until(clerk, case_no, lambda c: c["status"] == "supplement_pending")
        contract = await clerk.upload(pdf("施工合同"), "施工合同.pdf")
        await clerk.act(
            here["id"],
            "supplement",
            {"materials": [{"name": "施工合同", "blob": contract["sha256"]}]},
        )
        await until(approver, case_no, lambda c: c["status"] == "accepted")
        second_deadline = (today_in_china() + timedelta(days=20)).isoformat()
        await approver.act(
            there["id"],
            "request_supplement",
            {
                "items": [{"name": "监理合同", "requirement": "请提供监理合同"}],
                "deadline": second_deadline,
            },
        )
        await until(clerk, case_no, lambda c: c["status"] == "supplement_pending")
        for client, case_id in ((clerk, here["id"]), (approver, there["id"])):
            details = (await client.ok("GET", f"/api/v1/cases/{case_id}"))["details"]
            # The current notice where the code reads it; the earlier ones, latest first.
            assert details["supplement"]["deadline"] == second_deadline
            assert details["supplement"]["items"][0]["name"] == "监理合同"
            (earlier,) = details["supplement_history"]
            assert earlier["deadline"] == first_deadline
            assert [m["name"] for m in earlier["supplied"]] == ["施工合同"]

        citizen = ApiClient(shaoyang.url, http)
        view = await citizen.ok("GET", f"/api/v1/public/cases/{case_no}?code={code}")
        steps = [s["text"] for s in view["timeline"]]
        assert [s for s in steps if s.startswith("需要补正材料")] == [
            f"需要补正材料，请在 {first_deadline} 前到收件窗口补交",
            f"需要补正材料，请在 {second_deadline} 前到收件窗口补交",
        ]
        assert view["supplement"]["deadline"] == second_deadline
