"""What clients send that the node cannot use is refused with a 400 and a stable code, never a
500: hostile JSON bodies (100 000 nested arrays), numbers beyond any database column in the
query or the path. One shared reader, node/http_json.py, for every area."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.cli import main
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs

PASSWORD = "tongban-input-pw"
HUGE = "99999999999999999999"
NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
async def node(
    tmp_path: Path, databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningNode]:
    (config,) = await make_configs(tmp_path, databases, [("430400", "衡阳市")], link=False)
    for username, role in (("admin", "admin"), ("approver", "approver")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
        argv = ["users", "add", "--dir", str(config.dir), "--username", username, "--role", role]
        assert await asyncio.to_thread(main, [*argv, "--password-stdin"]) == 0
    running = await RunningNode(config).start()
    yield running
    await running.stop()


async def login(http: aiohttp.ClientSession, node: RunningNode, username: str) -> str:
    body = {"username": username, "password": PASSWORD}
    async with http.post(f"{node.url}/api/v1/login", json=body) as resp:
        assert resp.status == 200
        return str((await resp.json())["token"])


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, Any]:
    return resp.status, await resp.json()


async def test_100000_nested_arrays_are_invalid_json_not_a_crash(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{node.url}/api/v1/login",
            data=NESTED,
            headers={"Content-Type": "application/json"},
        ) as resp:
            status, body = await answer(resp)
        assert (status, body["error"]) == (400, "invalid_json")
        assert isinstance(body["detail"], str)
        # Nested inside an object, one level over the limit, on an admin route.
        token = await login(http, node, "admin")
        deep: Any = "x"
        for _ in range(32):
            deep = [deep]
        async with http.post(
            f"{node.url}/api/v1/users",
            json={"username": deep, "password": PASSWORD, "role": "clerk"},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            status, body = await answer(resp)
        assert (status, body["error"]) == (400, "invalid_json")
        # Other faults of strict JSON: duplicate names, NaN.
        for raw in (b'{"username": "a", "username": "b"}', b'{"username": NaN}'):
            async with http.post(
                f"{node.url}/api/v1/login", data=raw, headers={"Content-Type": "application/json"}
            ) as resp:
                status, body = await answer(resp)
            assert (status, body["error"]) == (400, "invalid_json"), raw
        # Still serving, and valid JSON still works.
        assert await login(http, node, "approver")


async def test_page_number_beyond_any_offset_is_refused_with_400(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        token = await login(http, node, "approver")
        cookies = {f"tongban_session_{node.config.region}": token}
        async with http.get(f"{node.url}/office?page={HUGE}", cookies=cookies) as resp:
            status, body = await answer(resp)
        assert (status, body["error"]) == (400, "invalid_input")
        assert [f["field"] for f in body["fields"]] == ["page"]
        async with http.get(f"{node.url}/office?page=2", cookies=cookies) as resp:
            assert resp.status == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"from=2026-12-01&days={HUGE}", "days"),
        ("from=2026-12-01&days=1e3", "days"),
        (f"year={HUGE}", "year"),
        ("year=-0x10", "year"),
    ],
)
async def test_calendar_numbers_out_of_range_are_invalid_input(
    node: RunningNode, query: str, field: str
) -> None:
    path = "/api/v1/calendar/deadline" if "days" in query else "/api/v1/calendar"
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}{path}?{query}") as resp:
        status, body = await answer(resp)
    assert (status, body["error"]) == (400, "invalid_input")
    assert [f["field"] for f in body["fields"]] == [field]


async def test_user_id_beyond_any_row_is_not_found(node: RunningNode) -> None:
    async with aiohttp.ClientSession() as http:
        token = await login(http, node, "admin")
        auth = {"Authorization": f"Bearer {token}"}
        for user_id in (HUGE, "-1", "0"):
            async with http.get(f"{node.url}/api/v1/users/{user_id}", headers=auth) as resp:
                status, body = await answer(resp)
            assert (status, body["error"]) == (404, "user_not_found"), user_id
        async with http.post(f"{node.url}/api/v1/users/{HUGE}/deactivate", headers=auth) as resp:
            status, body = await answer(resp)
        assert (status, body["error"]) == (404, "user_not_found")
