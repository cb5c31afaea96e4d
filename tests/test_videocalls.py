"""视频办 on a real node (aiohttp, real database, real WebSockets): the queue's rules (position,
leaving, the bound, the per-client budget, stable codes), who may do what, consent, opening
hours and callbacks (the phone sealed, never logged), ratings and appointments."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode
from sqlalchemy import select

from node.accounts.sessions import cookie_name
from node.accounts.staff import ROLES
from node.appkeys import VIDEO_DESK
from node.cli import main as cli
from node.clock import CHINA
from node.storage.sealing import load_sealer
from node.videocalls.models import video_callbacks, video_calls
from node.videocalls.service import CALLBACK_PHONE_PLACE, PHONE_PLACE
from node.videocalls.settings import parse_range, video_call_settings
from node.videocalls.views import STAFF_ROUTES
from node.workdays.calendar import HolidayCalendar, YearCalendar
from tests.support.api import ApiClient, form_login
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode
from tests.support.videocalls import ALWAYS, not_today, video_node
from tests.support.waiting import wait_until

PHONE = "13905460001"
SLOT = (datetime.now(CHINA) + timedelta(days=3)).strftime("%Y-%m-%dT10:00")


@pytest.fixture
async def node(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[RunningNode]:
    running = await video_node(
        tmp_path, databases, f"{ALWAYS}\nmax_queue = 3\nclient_calls_burst = 3"
    )
    yield running
    await running.stop()


async def start(
    http: aiohttp.ClientSession, node: RunningNode, body: Any, client: str = "10.0.0.1"
) -> tuple[int, Any]:
    async with http.post(
        f"{node.url}/video/v1/calls", json=body, headers={"X-Forwarded-For": client}
    ) as resp:
        return resp.status, await resp.json()


async def rows(node: RunningNode) -> list[Any]:
    async with node.db.read() as conn:
        return list(
            (await conn.execute(select(video_calls).order_by(video_calls.c.created_at))).all()
        )


class Citizen:
    """A citizen's page as the node sees it: the call's WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def join(
        cls, http: aiohttp.ClientSession, node: RunningNode, call: dict[str, Any]
    ) -> tuple[Citizen, dict[str, Any]]:
        ws = await http.ws_connect(f"{node.url}/video/v1/calls/{call['id']}/ws")
        await ws.send_json({"type": "join", "key": call["key"]})
        joined = await ws.receive_json(timeout=10)
        return cls(ws), joined

    async def next(self, kind: str) -> dict[str, Any]:
        while True:
            message = await self.ws.receive_json(timeout=10)
            if message["type"] == kind:
                return dict(message)

    def lose_connection(self) -> None:
        """The phone's network goes: the TCP connection ends without a WebSocket close frame."""
        self.ws._writer.transport.abort()  # aiohttp keeps the socket's transport only there


async def test_the_queue_tells_positions_and_a_citizen_who_closes_the_page_leaves_it(
    node: RunningNode,
) -> None:
    async with aiohttp.ClientSession() as http:
        calls = []
        for n in range(3):
            status, body = await start(
                http, node, {"topic": f"咨询{n}", "consent": n == 0}, f"10.0.0.{n}"
            )
            assert status == 201, body
            assert body["position"] == n + 1 and body["estimate_s"] > 0
            calls.append(body)
        citizens = []
        for n, call in enumerate(calls):
            citizen, joined = await Citizen.join(http, node, call)
            assert joined["type"] == "joined" and joined["position"] == n + 1
            citizens.append(citizen)
        # The second closes the page: the third moves up at once.
        await citizens[1].ws.close()
        moved = await citizens[2].next("queue")
        assert moved["position"] == 2
        stored = {r.id: r for r in await rows(node)}
        assert stored[calls[1]["id"]].status == "left"
        assert stored[calls[1]["id"]].end_reason == "left"
        assert [w for w in node.app[VIDEO_DESK].queue] == [calls[0]["id"], calls[2]["id"]]
        # A wrong key joins nothing (and the socket is closed).
        ws = await http.ws_connect(f"{node.url}/video/v1/calls/{calls[0]['id']}/ws")
        await ws.send_json({"type": "join", "key": "wrong"})
        refused = await ws.receive_json(timeout=10)
        assert refused["code"] == "call_key_invalid"
        # A left call cannot be rejoined.
        ws2 = await http.ws_connect(f"{node.url}/video/v1/calls/{calls[1]['id']}/ws")
        await ws2.send_json({"type": "join", "key": calls[1]["key"]})
        assert (await ws2.receive_json(timeout=10))["code"] == "call_over"
        for c in (citizens[0], citizens[2]):
            await c.ws.close()


async def test_the_queue_is_bounded_and_each_client_has_a_budget(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        calls = []
        for _n in range(3):
            status, body = await start(http, node, {}, "10.0.1.1")
            assert status == 201
            calls.append(body)
        # Another client: the queue (3) is full.
        status, body = await start(http, node, {}, "10.0.1.2")
        assert (status, body["error"]) == (503, "queue_full")
        assert "排队人数已满" in body["detail"]
        # One leaves: room again, but not for the first client (its burst of 3 is spent).
        citizen, _ = await Citizen.join(http, node, calls[0])
        await citizen.ws.close()

        async def room() -> bool:
            return len(node.app[VIDEO_DESK].queue) == 2

        await wait_until(room)
        status, body = await start(http, node, {}, "10.0.1.1")
        assert (status, body["error"]) == (429, "too_many_calls")
        assert len(await rows(node)) == 3  # refusals stored nothing
        status, body = await start(http, node, {}, "10.0.1.2")
        assert status == 201 and body["position"] == 3


async def test_a_call_whose_page_never_joins_leaves_the_queue(node: RunningNode) -> None:
    node.app[VIDEO_DESK].join_within = 0.5
    async with aiohttp.ClientSession() as http:
        status, call = await start(http, node, {})
        assert status == 201

        async def gone() -> bool:
            return [(r.status, r.end_reason) for r in await rows(node)] == [
                ("left", "never_joined")
            ]

        await wait_until(gone)
        assert call["id"] not in node.app[VIDEO_DESK].queue


async def test_a_lost_connection_keeps_the_place_for_the_page_to_come_back(
    node: RunningNode,
) -> None:
    desk = node.app[VIDEO_DESK]
    async with aiohttp.ClientSession() as http:
        calls = [(await start(http, node, {}, f"10.0.1.{n}"))[1] for n in range(2)]
        first, _ = await Citizen.join(http, node, calls[0])
        second, _ = await Citizen.join(http, node, calls[1])
        first.lose_connection()

        async def away() -> bool:
            return calls[0]["id"] in desk.away

        await wait_until(away)
        # The place is kept: nobody moves up, the row still waits.
        assert list(desk.queue) == [calls[0]["id"], calls[1]["id"]]
        assert [r.status for r in await rows(node)] == ["waiting", "waiting"]
        again, joined = await Citizen.join(http, node, calls[0])
        assert joined["type"] == "joined" and joined["status"] == "waiting"
        assert joined["position"] == 1
        assert desk.away == {} and desk.citizens.keys() == {calls[0]["id"], calls[1]["id"]}
        # Back, the page hears the queue again: the second leaves (a close frame: at once).
        await second.ws.close()
        assert (await again.next("queue"))["position"] == 1
        await again.ws.close()


@pytest.mark.parametrize(
    ("code", "kept"),
    [
        (WSCloseCode.OK, False),  # the page closed its socket itself
        (WSCloseCode.GOING_AWAY, True),  # the page reloads, navigates or its tab closes
        (4000, False),  # any other reason the page gives
    ],
)
async def test_a_page_going_away_keeps_the_place_and_other_closes_leave(
    node: RunningNode, code: int, kept: bool
) -> None:
    """A browser closes a page's sockets as "going away" (1001) when the page unloads: a
    reload keeps the call in the tab (sessionStorage), so the place is kept as for a lost
    connection. Every other close frame leaves the queue at once."""
    desk = node.app[VIDEO_DESK]
    async with aiohttp.ClientSession() as http:
        calls = [(await start(http, node, {}, f"10.0.3.{n}"))[1] for n in range(2)]
        first, _ = await Citizen.join(http, node, calls[0])
        second, _ = await Citizen.join(http, node, calls[1])
        await first.ws.close(code=code)
        if kept:

            async def away() -> bool:
                return calls[0]["id"] in desk.away

            await wait_until(away)
            assert list(desk.queue) == [calls[0]["id"], calls[1]["id"]]
            reloaded, joined = await Citizen.join(http, node, calls[0])
            assert (joined["type"], joined["status"], joined["position"]) == (
                "joined",
                "waiting",
                1,
            )
            assert desk.away == {}
            await reloaded.ws.close()
        else:
            assert (await second.next("queue"))["position"] == 1
            stored = {r.id: r for r in await rows(node)}
            assert (stored[calls[0]["id"]].status, stored[calls[0]["id"]].end_reason) == (
                "left",
                "left",
            )
            assert desk.away == {}
        await second.ws.close()


async def test_a_page_not_back_within_the_grace_has_left(node: RunningNode) -> None:
    desk = node.app[VIDEO_DESK]
    desk.rejoin_within = 0.5
    async with aiohttp.ClientSession() as http:
        calls = [(await start(http, node, {}, f"10.0.2.{n}"))[1] for n in range(2)]
        first, _ = await Citizen.join(http, node, calls[0])
        second, _ = await Citizen.join(http, node, calls[1])
        first.lose_connection()
        moved = await second.next("queue")
        assert moved["position"] == 1
        stored = {r.id: r for r in await rows(node)}
        assert (stored[calls[0]["id"]].status, stored[calls[0]["id"]].end_reason) == (
            "left",
            "connection_lost",
        )
        # Too late: the key opens nothing any more.
        late = await http.ws_connect(f"{node.url}/video/v1/calls/{calls[0]['id']}/ws")
        await late.send_json({"type": "join", "key": calls[0]["key"]})
        assert (await late.receive_json(timeout=10))["code"] == "call_over"
        await second.ws.close()


async def test_a_page_that_stops_answering_heartbeats_leaves_the_queue(node: RunningNode) -> None:
    node.app[VIDEO_DESK].rejoin_within = 0.5
    async with aiohttp.ClientSession() as http:
        _, call = await start(http, node, {})
        # A page that froze: its socket stays open but never answers the node's pings.
        ws = await http.ws_connect(
            f"{node.url}/video/v1/calls/{call['id']}/ws", autoping=False, heartbeat=None
        )
        await ws.send_json({"type": "join", "key": call["key"]})

        async def gone() -> bool:
            return [(r.status, r.end_reason) for r in await rows(node)] == [
                ("left", "connection_lost")
            ]

        await wait_until(gone, timeout=60)
        assert call["id"] not in node.app[VIDEO_DESK].queue
        await ws.close()


async def test_bad_input_is_refused_field_by_field_and_stores_nothing(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        for body, field in (
            ({"phone": "12345"}, "phone"),
            ({"consent": "yes"}, "consent"),
            ({"topic": "x" * 201}, "topic"),
            ({"item_code": "<script>"}, "item_code"),
        ):
            status, answer = await start(http, node, body)
            assert status == 400 and answer["error"] == "invalid_input", answer
            assert [f["field"] for f in answer["fields"]] == [field]
        async with http.post(f"{node.url}/video/v1/calls", data=b"[1,") as resp:
            assert (resp.status, (await resp.json())["error"]) == (400, "invalid_json")
        assert await rows(node) == []


async def test_the_phone_is_sealed_and_never_logged(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as http:
        status, _body = await start(http, node, {"phone": PHONE})
        assert status == 201
    [row] = await rows(node)
    assert row.phone.startswith("enc1:") and PHONE not in row.phone
    assert node.fed.sealer.open(row.phone, PHONE_PLACE) == PHONE
    assert row.phone_masked == "139****0001"
    assert PHONE not in caplog.text


async def _staff(http: aiohttp.ClientSession, node: RunningNode, role: str) -> ApiClient:
    return await ApiClient(node.url, http).login(role)


async def test_who_may_pick_up_and_one_winner(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        _, call = await start(http, node, {"consent": False})
        citizen, _ = await Citizen.join(http, node, call)
        clerk = await _staff(http, node, "clerk")
        helper = await _staff(http, node, "helper")
        approver = await _staff(http, node, "approver")
        path = f"/video/v1/calls/{call['id']}/pick"
        assert (await approver.call("POST", path))[0] == 403
        status, body = await clerk.call("POST", path)
        assert (status, body["error"]) == (403, "not_on_duty")  # a clerk opts in first
        # The desk's queue says who may answer: helpers by role, clerks once opted in.
        assert (await clerk.call("GET", "/video/v1/queue"))[1]["can_answer"] is False
        assert (await helper.call("GET", "/video/v1/queue"))[1]["can_answer"] is True
        status, body = await helper.call("POST", path)
        assert status == 200, body
        picked = await citizen.next("picked")
        assert picked["name"] == "孙丽"
        # Without consent there is no recorder.
        assert node.app[VIDEO_DESK].live[call["id"]].recording is False
        assert (await clerk.call("POST", "/video/v1/duty", {"on": True}))[0] == 200
        assert (await clerk.call("GET", "/video/v1/queue"))[1]["can_answer"] is True
        status, body = await clerk.call("POST", path)
        assert (status, body["error"]) == (409, "call_taken")
        # Only the helper who answered may use the call.
        status, body = await clerk.call("POST", f"/video/v1/calls/{call['id']}/end")
        assert (status, body["error"]) == (403, "not_your_call")
        status, body = await helper.call("POST", f"/video/v1/calls/{call['id']}/snapshots")
        assert (status, body["error"]) == (409, "no_video")  # no media yet: nothing stored
        status, body = await helper.call("POST", f"/video/v1/calls/{call['id']}/phone")
        assert (status, body["error"]) == (404, "no_phone")
        [row] = await rows(node)
        assert (row.status, row.clerk) == ("active", "helper")
        await citizen.ws.close()


async def test_consent_starts_the_recorder(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        _, call = await start(http, node, {"consent": True, "phone": PHONE})
        helper = await _staff(http, node, "helper")
        assert (await helper.call("POST", f"/video/v1/calls/{call['id']}/pick"))[0] == 200
        assert node.app[VIDEO_DESK].live[call["id"]].recording is True
        # The callback phone in full: for the helper who answered only.
        status, body = await helper.call("POST", f"/video/v1/calls/{call['id']}/phone")
        assert (status, body["phone"]) == (200, PHONE)
        clerk = await _staff(http, node, "clerk")
        status, body = await clerk.call("POST", f"/video/v1/calls/{call['id']}/phone")
        assert (status, body["error"]) == (403, "not_your_call")


async def test_rating_after_the_call_once_with_the_case_rules(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        _, call = await start(http, node, {})
        helper = await _staff(http, node, "helper")
        rate = f"{node.url}/video/v1/calls/{call['id']}/rating"

        async def rating(body: Any) -> tuple[int, Any]:
            async with http.post(rate, json=body) as resp:
                return resp.status, await resp.json()

        assert (await rating({"key": call["key"], "level": 5}))[1]["error"] == "not_ended"
        citizen, _ = await Citizen.join(http, node, call)
        await helper.call("POST", f"/video/v1/calls/{call['id']}/pick")
        await citizen.next("picked")
        status, booked = await helper.call(
            "POST", f"/video/v1/calls/{call['id']}/appointment", {"at": "2020-01-01T09:00"}
        )
        assert status == 400 and booked["fields"][0]["code"] == "out_of_range"
        status, booked = await helper.call(
            "POST", f"/video/v1/calls/{call['id']}/appointment", {"at": "tomorrow"}
        )
        assert status == 400 and booked["fields"][0]["code"] == "invalid_datetime"
        status, booked = await helper.call(
            "POST", f"/video/v1/calls/{call['id']}/appointment", {"at": SLOT, "note": "窗口 3"}
        )
        assert status == 201
        # The citizen's page hears of the slot and of the end, media offered or not.
        assert (await citizen.next("appointment"))["at"] == SLOT
        assert (await helper.call("POST", f"/video/v1/calls/{call['id']}/end"))[0] == 200
        assert (await citizen.next("ended"))["reason"] == "done"
        assert (await rating({"key": "nope", "level": 5}))[1]["error"] == "call_key_invalid"
        status, body = await rating({"key": call["key"], "level": 2})
        assert status == 400 and body["fields"][0]["field"] == "comment"
        status, body = await rating({"key": call["key"], "level": 9})
        assert status == 400 and body["fields"][0]["field"] == "level"
        status, body = await rating({"key": call["key"], "level": 2, "comment": "等太久"})
        assert status == 201 and body["channel"] == "video"
        status, body = await rating({"key": call["key"], "level": 5})
        assert (status, body["error"]) == (409, "already_rated")
        [row] = await rows(node)
        assert (row.rating_level, row.rating_comment, row.rating_channel) == (2, "等太久", "video")
        assert (row.appointment_at, row.appointment_note) == (SLOT, "窗口 3")


async def test_every_role_on_every_staff_route_of_the_table(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        anonymous = ApiClient(node.url, http)
        for method, route in STAFF_ROUTES:
            path = route.format(call_id="0" * 36, sha256="a" * 64, callback_id=1)
            if not route.startswith("/video/v1/"):
                async with http.get(node.url + path, allow_redirects=False) as resp:
                    assert resp.status == 302 and "/login" in resp.headers["Location"], route
                continue
            status, _ = await anonymous.call(method, path, {} if method == "POST" else None)
            assert status == 401, route
        for role in ROLES:
            async with await form_login(http, node.url, role) as resp:
                name = cookie_name(node.config.region)
                jar = {name: resp.cookies[name].value}
            for (_method, route), allowed in STAFF_ROUTES.items():
                if route.startswith("/video/v1/"):
                    continue
                path = route.format(call_id="0" * 36, callback_id=1)
                async with http.get(node.url + path, cookies=jar, allow_redirects=False) as resp:
                    # Allowed: the page (a call nobody has is a 404 notice); else the 403 page.
                    expected = (200, 404) if role in allowed else (403,)
                    assert resp.status in expected, (role, route, resp.status)
                    assert resp.content_type == "text/html"
            client = await _staff(http, node, role)
            for (method, route), allowed in STAFF_ROUTES.items():
                if not route.startswith("/video/v1/"):
                    continue  # pages: above
                path = route.format(call_id="0" * 36, sha256="a" * 64, callback_id=1)
                status, body = await client.call(method, path, {} if method == "POST" else None)
                if role in allowed:
                    assert status != 403 or body["error"] in ("not_on_duty", "not_your_call"), (
                        role,
                        route,
                        status,
                        body,
                    )
                    assert status != 401
                else:
                    assert (status, body["error"]) == (403, "forbidden"), (role, route, status)


async def test_outside_opening_hours_a_callback_is_stored_sealed(
    tmp_path: Path, databases: DatabaseFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = await video_node(tmp_path, databases, not_today(), region="430400")
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await start(http, node, {})
            assert (status, body["error"]) == (409, "outside_hours")
            async with http.get(f"{node.url}/video?item=430400-XK-0001") as resp:
                page = await resp.text()
            assert 'id="callback-form"' in page and 'id="ask-form"' not in page
            async with http.post(f"{node.url}/video/v1/callbacks", json={"phone": "12"}) as resp:
                assert resp.status == 400
            async with http.post(
                f"{node.url}/video/v1/callbacks", json={"phone": PHONE, "topic": "营业执照"}
            ) as resp:
                assert resp.status == 201
            helper = await _staff(http, node, "helper")
            status, listed = await helper.call("GET", "/video/v1/callbacks")
            assert [c["phone_masked"] for c in listed["callbacks"]] == ["139****0001"]
            assert PHONE not in json.dumps(listed)
            # Taking it gives the number to one staff member, once, and records who.
            number = listed["callbacks"][0]["id"]
            status, taken = await helper.call("POST", f"/video/v1/callbacks/{number}/take")
            assert status == 200 and taken["phone"] == PHONE
            status, again = await helper.call("POST", f"/video/v1/callbacks/{number}/take")
            assert (status, again["error"]) == (409, "callback_taken")
            status, missing = await helper.call("POST", "/video/v1/callbacks/99999/take")
            assert (status, missing["error"]) == (404, "callback_not_found")
            assert (await helper.call("GET", "/video/v1/callbacks"))[1]["callbacks"] == []
        async with node.db.read() as conn:
            [row] = (await conn.execute(select(video_callbacks))).all()
        assert node.fed.sealer.open(row.phone, CALLBACK_PHONE_PLACE) == PHONE
        assert (row.status, row.handled_by) == ("done", "helper")
        assert PHONE not in row.phone and PHONE not in caplog.text
        assert await rows(node) == []
    finally:
        await node.stop()


def test_workdays_follow_the_holiday_calendar() -> None:
    # 2026: 国庆节 1–8 October off, Saturday 10 October worked (调休).
    calendar = HolidayCalendar(
        [
            YearCalendar(
                2026,
                {date(2026, 10, d): "国庆节" for d in range(1, 9)},
                {date(2026, 10, 10): "国庆节"},
            )
        ]
    )
    settings = video_call_settings({})  # the default: workdays 09:00–12:00 and 13:30–17:30
    assert settings.labels() == ["工作日 09:00–12:00", "工作日 13:30–17:30"]

    def at(day: int, hour: int, minute: int = 0) -> bool:
        moment = datetime(2026, 10, day, hour, minute, tzinfo=CHINA)
        return settings.open_at(moment, calendar.is_working_day)

    assert not at(1, 10)  # a Thursday of the holiday
    assert at(10, 10)  # the Saturday worked instead
    assert not at(11, 10)  # an ordinary Sunday
    assert at(12, 9) and at(12, 11, 59) and not at(12, 12) and not at(12, 13)
    assert at(12, 13, 30) and not at(12, 17, 30)
    weekly = video_call_settings({"hours": ["sat 09:00-12:00"]})
    assert weekly.open_at(datetime(2026, 10, 3, 10, tzinfo=CHINA), calendar.is_working_day)


def test_opening_hours_are_read_strictly() -> None:
    monday_9 = parse_range("mon-fri 09:00-12:00")
    assert monday_9.label() == "周一至周五 09:00–12:00"
    assert parse_range("sun 00:00-24:00").label() == "周日 00:00–24:00"
    for bad in (
        "workdays-fri 09:00-12:00",
        "mon-fri 12:00-09:00",
        "fri-mon 09:00-12:00",
        "xyz 09:00-10:00",
        "mon 25:00-26:00",
        "mon",
    ):
        with pytest.raises(ValueError):
            parse_range(bad)
    with pytest.raises(ValueError):
        video_call_settings({"max_queue": 0})
    with pytest.raises(ValueError):
        video_call_settings({"colour": "red"})
    assert video_call_settings({"max_queue": 5}).max_queue == 5


async def test_figures_count_waits_and_unanswered_calls(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        _, first = await start(http, node, {}, "10.0.2.1")
        _, second = await start(http, node, {}, "10.0.2.2")
        citizen, _ = await Citizen.join(http, node, second)
        await citizen.ws.close()
        helper = await _staff(http, node, "helper")
        await helper.call("POST", f"/video/v1/calls/{first['id']}/pick")
        await helper.call("POST", f"/video/v1/calls/{first['id']}/end")

        async def left() -> bool:
            return any(r.status == "left" for r in await rows(node))

        await wait_until(left)
        supervisor = await _staff(http, node, "supervisor")
        status, figures = await supervisor.call("GET", "/video/v1/figures")
        assert status == 200
        period = figures["period"]
        assert (period["calls"], period["answered"], period["unanswered"]) == (2, 1, 1)
        assert period["wait_p50_s"] is not None and period["wait_p90_s"] >= period["wait_p50_s"]
        assert figures["now"]["waiting"] == 0
        assert sum(d["calls"] for d in figures["days"]) == 2


async def test_rotate_data_and_reseal_move_the_phones_to_the_new_key(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        assert (await start(http, node, {"phone": PHONE}))[0] == 201
        async with http.post(
            f"{node.url}/video/v1/callbacks",
            json={"phone": PHONE},
            headers={"X-Forwarded-For": "10.0.3.1"},
        ) as resp:
            assert resp.status == 201
    directory = str(node.config.dir)
    assert await asyncio.to_thread(cli, ["keys", "rotate-data", "--dir", directory]) == 0
    assert await asyncio.to_thread(cli, ["keys", "reseal", "--dir", directory]) == 0
    sealer = load_sealer(node.config.dir)
    [call] = await rows(node)
    async with node.db.read() as conn:
        [callback] = (await conn.execute(select(video_callbacks))).all()
    for value, place in ((call.phone, PHONE_PLACE), (callback.phone, CALLBACK_PHONE_PLACE)):
        assert sealer.is_current(value) and sealer.open(value, place) == PHONE


async def test_at_the_same_moment_one_pick_wins_and_the_bound_holds(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(*(start(http, node, {}, f"10.0.4.{n}") for n in range(6)))
        assert sorted(status for status, _ in answers) == [201, 201, 201, 503, 503, 503]
        assert len(await rows(node)) == 3
        call = next(body for status, body in answers if status == 201)
        helper = await _staff(http, node, "helper")
        clerk = await _staff(http, node, "clerk")
        await clerk.call("POST", "/video/v1/duty", {"on": True})
        path = f"/video/v1/calls/{call['id']}/pick"
        picks = await asyncio.gather(helper.call("POST", path), clerk.call("POST", path))
        assert sorted(status for status, _ in picks) == [200, 409]
        [row] = [r for r in await rows(node) if r.id == call["id"]]
        winner = "helper" if picks[0][0] == 200 else "clerk"
        assert (row.status, row.clerk) == ("active", winner)
        assert node.app[VIDEO_DESK].live[call["id"]].clerk == winner
