"""`tongban demo`: three regions with the demo catalogue, staff and cases in every state, made
through the real API while the nodes run; the table of URLs and logins; a second start adds
nothing. (The demo always keeps its regions in SQLite files under its folder.)"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.appkeys import DATABASE
from node.cases.cli import verify_cases
from node.demo.banner import DEMO_ONLINE_ITEMS
from node.demo.people import demo_people
from node.demo.regions import DEMO_PASSWORD, DEMO_USERS, provider_url
from node.demo.serving import start
from node.demo.stories import STORIES
from tests.support.nodes import free_port

EVERY_STATE = {
    "received",
    "forwarded",
    "accepted",
    "not_accepted",
    "supplement_pending",
    "inspection",
    "approved",
    "denied",
    "dispatched",
    "delivered",
    "withdrawn",
}


def _free_ports(count: int = 4) -> int:
    """A base port with ``count`` free ports from it."""
    for _ in range(50):
        base = free_port()
        try:
            for offset in range(count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


async def _cases(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    async with http.post(
        f"{url}/api/v1/login", json={"username": "supervisor", "password": DEMO_PASSWORD}
    ) as resp:
        token = (await resp.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{url}/api/v1/cases?limit=200", headers=headers) as resp:
        listing = await resp.json()
    async with http.get(f"{url}/api/v1/supervision", headers=headers) as resp:
        board = await resp.json()
    cases = {c["case_no"]: c for c in listing["cases"]}
    for rating in board["open_rectifications"]:
        cases[rating["case_no"]]["open_rectification"] = True
    return cases


def test_demo_help_keeps_its_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "node.cli", "demo", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--dir" in out and "--base-port" in out


async def test_demo_makes_every_state_on_the_right_nodes_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_port = _free_ports()
    running = await start(tmp_path / "demo", base_port)
    try:
        out = capsys.readouterr().out
        assert "未能生成" not in out
        assert list(running.cases) == [story.key for story in STORIES]
        urls = {c.region: c.url for c in running.configs}
        assert set(urls) == {"430400", "430523", "370500"}
        assert urls["430400"] == f"http://127.0.0.1:{base_port}"
        assert urls["370500"] == f"http://127.0.0.1:{base_port + 2}"
        for url in urls.values():
            assert url in out
            assert f"{url}/guide\n" in out  # the 办事指南 of each region
        for username in DEMO_USERS:
            assert username in out
        for role in ("收件人员", "审批人员", "勘验人员", "监督人员", "系统管理员"):
            assert role in out
        assert DEMO_PASSWORD in out and "王芳" in out and "李明" in out
        # The development identity provider, labelled as such, and its demo people.
        assert provider_url(base_port) in out and "开发用身份认证服务" in out
        assert all(p.name in out and p.id_number in out for p in demo_people())
        assert f"{urls['430400']}/apply/{DEMO_ONLINE_ITEMS['430400']}" in out
        example = running.cases["dispatched"]
        assert f"{urls[example['receiving']]}/query?case={example['case_no']}" in out
        assert f"查询码 {example['query_code']}" in out

        async with aiohttp.ClientSession() as http:
            seen = {region: await _cases(http, url) for region, url in urls.items()}
            # Every story's case is in its state on each node that holds it.
            for key, entry in running.cases.items():
                parts = entry.get("parts") or [entry]
                for part in parts:
                    holders = {entry["receiving"], part["handling"]}
                    for region in holders:
                        case = seen[region].get(part["case_no"])
                        assert case is not None, (key, region)
                        assert case["status"] == part["status"], (key, region, case["status"])
            states = {c["status"] for cases in seen.values() for c in cases.values()}
            assert states >= EVERY_STATE
            # Each region both sends and handles cases.
            for region, cases in seen.items():
                assert any(c["receiving_region"] == region for c in cases.values()), region
                assert any(c["handling_region"] == region for c in cases.values()), region

            overdue = running.cases["overdue"]
            assert seen["430400"][overdue["case_no"]]["time_status"] == "overdue"
            assert overdue["mode"] == "online"
            warning = running.cases["warning"]
            assert seen["430523"][warning["case_no"]]["time_status"] == "warning"
            assert warning["mode"] == "online"
            bad = running.cases["bad_rating"]
            assert seen["430523"][bad["case_no"]].get("open_rectification")
            assert running.cases["bundle"]["mode"] == "joint"

            # The citizen's key works on the receiving node's public API.
            async with http.get(
                f"{urls[example['receiving']]}/api/v1/public/cases/{example['case_no']}",
                params={"code": example["query_code"]},
            ) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "dispatched"

        for runner in running.runners:
            checked, faults = await verify_cases(runner.app[DATABASE])
            assert checked > 0 and faults == []
        counts = {region: len(cases) for region, cases in seen.items()}
    finally:
        await running.stop()

    # A second start serves the same regions and cases, and makes none.
    again = await start(tmp_path / "demo", base_port)
    try:
        out = capsys.readouterr().out
        assert "正在生成演示办件" not in out
        assert again.cases == running.cases
        async with aiohttp.ClientSession() as http:
            for region, url in ((c.region, c.url) for c in again.configs):
                assert len(await _cases(http, url)) == counts[region]
        assert example["case_no"] in out
    finally:
        await again.stop()
