"""Staff accounts in the whole node: users added with `tongban users add` log in over HTTP,
their token opens the case domain's staff API of their own node and no other node's."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.cli import main
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs

PASSWORD = "tongban-demo"


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    nodes = [RunningNode(c) for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


async def add_user(
    monkeypatch: pytest.MonkeyPatch, node: RunningNode, username: str, role: str
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    argv = ["users", "add", "--dir", str(node.config.dir), "--username", username]
    code = await asyncio.to_thread(main, [*argv, "--role", role, "--password-stdin"])
    assert code == 0


async def test_cli_users_log_in_and_reach_only_their_own_node(
    monkeypatch: pytest.MonkeyPatch, pair: list[RunningNode]
) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await add_user(monkeypatch, shaoyang, "clerk", "clerk")
    await add_user(monkeypatch, hengyang, "clerk", "clerk")
    async with aiohttp.ClientSession() as session:
        login = {"username": "clerk", "password": PASSWORD}
        async with session.post(f"{shaoyang.url}/api/v1/login", json=login) as resp:
            assert resp.status == 200
            token = (await resp.json())["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        async with session.get(f"{shaoyang.url}/api/v1/me", headers=bearer) as resp:
            assert resp.status == 200
            assert (await resp.json())["region"] == "430523"
        async with session.get(f"{shaoyang.url}/api/v1/cases", headers=bearer) as resp:
            assert resp.status == 200
        # Same username and password on the other node, but this token is not its token.
        for path in ("/api/v1/me", "/api/v1/cases"):
            async with session.get(f"{hengyang.url}{path}", headers=bearer) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"] == "unauthorized"
        # A clerk is not an admin anywhere.
        async with session.get(f"{shaoyang.url}/api/v1/users", headers=bearer) as resp:
            assert resp.status == 403
