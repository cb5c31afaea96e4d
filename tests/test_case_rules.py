"""Rules of the case domain on real nodes: who may do what (every role × every action),
tamper detection in the audit chain, and provisional deadlines made final by a calendar load."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import delete, select, update

from node.accounts.auth import ROLES
from node.appkeys import CASES
from node.cases.cli import verify_cases
from node.cases.lifecycle import ACTIONS, Side
from node.cases.models import case_events, cases
from node.cases.queries import status_count_faults
from node.cases.recompute import recompute_provisional
from node.clock import CHINA
from node.workdays.service import load_calendar_file
from protocol.messages import example_body
from tests.support.api import ApiClient
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for, start_regions
from tests.support.waiting import wait_until

PERSON = {
    "kind": "person",
    "name": "周敏",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13973900003",
}
#: Values of the wrong type for every optional field: an allowed action fails validation (400)
#: instead of changing the case.
INVALID = {"note": 1, "recipient": 1, "reason": 1}


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    nodes = await start_regions(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    yield nodes
    for node in nodes:
        await node.stop()


async def proxy_case(
    http: aiohttp.ClientSession, shaoyang: RunningNode, hengyang: RunningNode
) -> tuple[int, int]:
    clerk = await ApiClient(shaoyang.url, http).login("clerk")
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
    approver = await ApiClient(hengyang.url, http).login("approver")
    case_no = created["case"]["case_no"]

    async def arrived() -> bool:
        return bool((await approver.ok("GET", f"/api/v1/cases?q={case_no}"))["cases"])

    await wait_until(arrived)
    [remote] = (await approver.ok("GET", f"/api/v1/cases?q={case_no}"))["cases"]
    return created["case"]["id"], remote["id"]


async def event_count(node: RunningNode, case_id: int) -> int:
    async with node.db.read() as conn:
        return int(
            (
                await conn.execute(select(cases.c.event_count).where(cases.c.id == case_id))
            ).scalar_one()
        )


async def test_every_role_and_action_is_checked_and_refusals_change_nothing(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        receiving_id, handling_id = await proxy_case(http, shaoyang, hengyang)
        for node, case_id, side in (
            (shaoyang, receiving_id, Side.RECEIVING),
            (hengyang, handling_id, Side.HANDLING),
        ):
            for role in ROLES:
                client = await ApiClient(node.url, http).login(role)
                for name, action in ACTIONS.items():
                    if not action.by_staff:
                        continue
                    before = await event_count(node, case_id)
                    status, body = await client.call(
                        "POST", f"/api/v1/cases/{case_id}/actions/{name}", INVALID
                    )
                    allowed = (action.side is None or action.side is side) and role in action.roles
                    if allowed:
                        assert status in (400, 409), (node.config.name, role, name, status, body)
                    else:
                        assert status == 403, (node.config.name, role, name, status, body)
                        assert body["error"] in ("forbidden", "wrong_side")
                    assert await event_count(node, case_id) == before, (role, name)
        anonymous = ApiClient(hengyang.url, http)
        status, body = await anonymous.call(
            "POST", f"/api/v1/cases/{handling_id}/actions/accept", {}
        )
        assert (status, body["error"]) == (401, "unauthorized")


#: Who may call the staff routes beside the case actions (docs/cases.md): written out here, not
#: derived from the code, so a change in either is caught.
ROUTE_ROLES: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/v1/cases"): {"clerk"},
    ("POST", "/api/v1/bundles"): {"clerk"},
    ("POST", "/api/v1/uploads"): {"clerk", "approver", "inspector"},
    ("GET", "/api/v1/supervision"): {"supervisor", "admin"},
    # Every role but the 视频帮办 (helper), who answers video calls and holds no case.
    ("GET", "/api/v1/cases"): set(ROLES) - {"helper"},
    ("GET", "/api/v1/cases/{id}"): set(ROLES) - {"helper"},
    ("GET", "/api/v1/files/{sha256}"): set(ROLES) - {"helper"},
    # 视频办 (docs/videocalls.md)
    ("GET", "/video/v1/queue"): {"helper", "clerk"},
    ("POST", "/video/v1/duty"): {"helper", "clerk"},
    ("GET", "/video/v1/callbacks"): {"helper", "clerk"},
    ("GET", "/video/v1/figures"): {"supervisor", "admin"},
}


async def test_every_role_on_every_staff_route_and_a_foreign_token(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        receiving_id, _handling_id = await proxy_case(http, shaoyang, hengyang)
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        scan = await clerk.upload(b"%PDF-1.4 matrix", "matrix.pdf")

        async def case_total() -> int:
            async with shaoyang.db.read() as conn:
                return len((await conn.execute(select(cases.c.id))).all())

        for role in ROLES:
            client = await ApiClient(shaoyang.url, http).login(role)
            for (method, route), allowed in ROUTE_ROLES.items():
                path = route.format(id=receiving_id, sha256=scan["sha256"])
                before = await case_total()
                if route == "/api/v1/uploads":
                    async with http.post(
                        shaoyang.url + path,
                        data=b"%PDF-1.4 " + role.encode(),
                        headers={"Authorization": f"Bearer {client.token}"},
                    ) as resp:
                        status = resp.status
                else:
                    status, _body = await client.call(
                        method, path, {} if method == "POST" else None
                    )
                if role in allowed:
                    # Allowed: answered (an empty application is refused on its fields).
                    assert status in (200, 201, 400), (role, method, route, status)
                else:
                    assert status == 403, (role, method, route, status)
                assert await case_total() == before
        # A token of another region is not a login here.
        foreign = await ApiClient(hengyang.url, http).login("clerk")
        async with http.get(
            f"{shaoyang.url}/api/v1/cases/{receiving_id}",
            headers={"Authorization": f"Bearer {foreign.token}"},
        ) as resp:
            assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"


async def test_audit_verify_detects_edited_removed_and_reordered_events(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        _receiving_id, handling_id = await proxy_case(http, shaoyang, hengyang)
        approver = await ApiClient(hengyang.url, http).login("approver")
        await approver.act(handling_id, "accept", {"note": "予以受理"})
        await approver.act(
            handling_id,
            "progress",
            {"kind": "pause", "reason": "专家评审", "procedure": "expert_review"},
        )
    db = hengyang.db
    assert (await verify_cases(db))[1] == []
    async with db.read() as conn:
        events = (
            await conn.execute(
                select(case_events)
                .where(case_events.c.case_id == handling_id)
                .order_by(case_events.c.seq)
            )
        ).all()
    assert len(events) == 3

    async def tampered(change: Any) -> list[Any]:
        async with db.write() as conn:
            await conn.execute(change)
        faults = (await verify_cases(db))[1]
        return faults

    # Edited: the promised date recorded by event 2.
    faults = await tampered(
        update(case_events)
        .where(case_events.c.id == events[1].id)
        .values(data='{"promised_date":"2099-01-01"}')
    )
    assert any(f.seq == 2 and "hash" in f.problem for f in faults)
    await tampered(
        update(case_events).where(case_events.c.id == events[1].id).values(data=events[1].data)
    )
    assert (await verify_cases(db))[1] == []
    # Reordered: swap the seq of events 2 and 3.
    async with db.write() as conn:
        await conn.execute(
            update(case_events).where(case_events.c.id == events[1].id).values(seq=-1)
        )
        await conn.execute(
            update(case_events).where(case_events.c.id == events[2].id).values(seq=2)
        )
        await conn.execute(
            update(case_events).where(case_events.c.id == events[1].id).values(seq=3)
        )
    assert (await verify_cases(db))[1]
    async with db.write() as conn:
        await conn.execute(
            update(case_events).where(case_events.c.id == events[1].id).values(seq=-1)
        )
        await conn.execute(
            update(case_events).where(case_events.c.id == events[2].id).values(seq=3)
        )
        await conn.execute(
            update(case_events).where(case_events.c.id == events[1].id).values(seq=2)
        )
    assert (await verify_cases(db))[1] == []
    # Removed: the newest event (no link after it to break; the case head catches it).
    faults = await tampered(delete(case_events).where(case_events.c.id == events[2].id))
    assert any("head" in f.problem or "events" in f.problem for f in faults)


async def test_provisional_deadline_becomes_final_when_next_year_is_loaded(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        _receiving_id, handling_id = await proxy_case(http, shaoyang, hengyang)
        service = hengyang.app[CASES]  # type: ignore[index]
        # 受理 on Wednesday 2026-12-30: two working days run into 2027, which no calendar covers yet.
        service.clock = lambda: datetime(2026, 12, 30, 10, 0, tzinfo=CHINA).timestamp()
        approver = await ApiClient(hengyang.url, http).login("approver")
        accepted = await approver.act(handling_id, "accept")
    # Weekends only: Thu 12-31 is day 1, Fri 2027-01-01 day 2.
    assert accepted["deadline"] == "2027-01-01" and accepted["deadline_provisional"] is True
    calendar = tmp_path / "2027.toml"
    calendar.write_text(
        '[[years]]\nyear = 2027\nholidays = [\n  { name = "元旦", from = 2027-01-01, to = 2027-01-03 },\n]\n',
        encoding="utf-8",
    )
    assert await load_calendar_file(hengyang.db, calendar, after_load=[recompute_provisional]) == [
        2027
    ]
    async with hengyang.db.read() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == handling_id))).one()
    # 元旦 1-3 January: day 2 is Monday 2027-01-04, and the deadline is final.
    assert (row.deadline, row.deadline_provisional) == ("2027-01-04", False)
    # The item's 1-day warning lead, as stored at 受理; the time-status counts moved along.
    assert (row.warning_days, row.warning_from) == (1, "2026-12-31")
    async with hengyang.db.read() as conn:
        assert await status_count_faults(conn) == []


async def test_withdrawal_requested_at_the_window_is_confirmed_by_the_handling_region(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        receiving_id, handling_id = await proxy_case(http, shaoyang, hengyang)
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        requested = await clerk.act(receiving_id, "withdraw", {"reason": "申请人另行办理"})
        assert requested["status"] == "forwarded"
        await clerk.act(receiving_id, "withdraw", {"reason": "再次申请"}, status=409)

        async def withdrawn_on_both() -> bool:
            here = await clerk.ok("GET", f"/api/v1/cases/{receiving_id}")
            async with hengyang.db.read() as conn:
                there = (
                    await conn.execute(select(cases.c.status).where(cases.c.id == handling_id))
                ).scalar_one()
            return here["status"] == there == "withdrawn"

        await wait_until(withdrawn_on_both)
        approver = await ApiClient(hengyang.url, http).login("approver")
        status, body = await approver.call(
            "POST", f"/api/v1/cases/{handling_id}/actions/accept", {}
        )
        assert (status, body["error"]) == (409, "transition_not_allowed")


async def test_a_message_the_sender_may_not_send_is_answered_with_case_error(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        receiving_id, handling_id = await proxy_case(http, shaoyang, hengyang)
    async with shaoyang.db.read() as conn:
        xt = (
            await conn.execute(select(cases.c.xt_id).where(cases.c.id == receiving_id))
        ).scalar_one()
    # 邵阳县 (the receiving side) claims to have accepted: only 衡阳市 may.
    async with shaoyang.db.write() as conn:
        forged = await shaoyang.fed.outbox.enqueue(
            conn,
            partner="430400",
            typ="case.accepted",
            xt=xt,
            body=example_body("case.accepted")[0],
        )

    async def answered() -> bool:
        async with shaoyang.db.read() as conn:
            rows = (
                await conn.execute(
                    select(case_events.c.action, case_events.c.data).where(
                        case_events.c.case_id == receiving_id
                    )
                )
            ).all()
        return any(r.action == "partner_error" for r in rows)

    await wait_until(answered)
    async with shaoyang.db.read() as conn:
        [error] = (
            (
                await conn.execute(
                    select(case_events.c.data).where(
                        case_events.c.case_id == receiving_id,
                        case_events.c.action == "partner_error",
                    )
                )
            )
            .scalars()
            .all()
        )
    assert '"code":"wrong_side"' in error and forged.jti in error
    async with hengyang.db.read() as conn:
        status = (
            await conn.execute(select(cases.c.status).where(cases.c.id == handling_id))
        ).scalar_one()
    assert status == "forwarded"


async def test_a_dry_run_checks_an_action_and_changes_nothing(pair: list[RunningNode]) -> None:
    """What a page asks before "提交后不能撤回": the action is checked and carried out, then
    undone — refusals come back as they would, and nothing is kept or sent."""
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        _receiving_id, handling_id = await proxy_case(http, shaoyang, hengyang)
        approver = await ApiClient(hengyang.url, http).login("approver")
        before = await event_count(hengyang, handling_id)
        path = f"/api/v1/cases/{handling_id}/actions"
        dry = await approver.ok("POST", f"{path}/accept?dry_run=1", {})
        assert dry == {"dry_run": True, "action": "accept"}
        status, refused = await approver.call("POST", f"{path}/not_accept?dry_run=1", {"reason": 1})
        assert (status, refused["error"]) == (400, "invalid_input")
        assert await event_count(hengyang, handling_id) == before
        case = await approver.ok("GET", f"/api/v1/cases/{handling_id}")
        assert case["status"] == "forwarded" and case["accepted_on"] is None
