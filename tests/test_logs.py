"""Logs are JSON lines with ids (case, route, envelope) and no personal data: a case walked
across two nodes served as `tongban run` serves them leaves no ID number, phone, name,
address or query code in any log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from node.app import create_app
from node.catalog.service import refresh_partner_catalog
from node.logging_setup import JsonAccessLogger, JsonFormatter
from tests.support.api import ApiClient
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.nodes import RunningNode, make_configs
from tests.support.regions import materials_for, provision
from tests.support.waiting import wait_until

ITEM = "430400-XK-0001"
APPLICANT = {
    "kind": "person",
    "name": "欧阳娜娜",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13973900002",
}
ADDRESS = "湖南省邵阳县塘渡口镇建设路88号"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing JSON lines into a buffer, as configure_logging sets it up."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old_level)


async def serve(node: RunningNode) -> RunningNode:
    """Serve ``node`` with the access log of `tongban run`."""
    node.app = create_app(node.config)
    node.runner = web.AppRunner(
        node.app,
        access_log_class=JsonAccessLogger,
        access_log=logging.getLogger("tongban.access"),
    )
    await node.runner.setup()
    await web.TCPSite(node.runner, node.config.host, node.config.port).start()
    return node


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    for config in configs:
        await provision(config)
    nodes = [await serve(RunningNode(c)) for c in configs]
    for node in nodes:
        for other in nodes:
            if other is not node:
                await refresh_partner_catalog(
                    node.db, node.fed.trust, node.fed.client, other.config.region
                )
    yield nodes
    for node in nodes:
        await node.stop()


async def test_a_case_walk_logs_ids_and_no_personal_data(
    pair: list[RunningNode], captured: io.StringIO
) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        citizen = ApiClient(shaoyang.url, http)
        item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
        created = await clerk.ok(
            "POST",
            "/api/v1/cases",
            {
                "item_code": ITEM,
                "mode": "proxy",
                "applicant": APPLICANT,
                "form": form_for(item),
                "materials": await materials_for(clerk, item),
                "identity_verified": True,
                "delivery": {"method": "mail", "address": ADDRESS},
            },
            status=201,
        )
        case_no, code = created["case"]["case_no"], created["query_code"]
        found: dict[str, Any] = {}

        async def arrived() -> bool:
            listing = await approver.ok("GET", f"/api/v1/cases?q={APPLICANT['name']}")
            found["cases"] = listing["cases"]
            return bool(listing["cases"])

        await wait_until(arrived)
        case_id = found["cases"][0]["id"]
        await approver.act(case_id, "accept", {"note": "材料齐全"})
        await citizen.ok("GET", f"/api/v1/public/cases/{case_no}?code={code}")
        await citizen.call("GET", f"/api/v1/public/cases/{case_no}?code=000000")

    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    text = captured.getvalue()
    secrets = [
        APPLICANT["id_number"],
        APPLICANT["phone"],
        APPLICANT["name"],
        ADDRESS,
        f"code={code}",
    ]
    for secret in secrets:
        assert secret not in text, f"personal data in logs: {secret}"
    assert json.dumps(APPLICANT["name"])[1:-1] not in text  # nor escaped
    access = [e for e in entries if e["logger"] == "tongban.access"]
    actions = [e for e in access if e["route"] == "/api/v1/cases/{id}/actions/{action}"]
    assert actions and actions[0]["id"] == str(case_id) and actions[0]["action"] == "accept"
    lookups = [e for e in access if e.get("case_no") == case_no]
    assert {e["status"] for e in lookups} == {200, 404}
    assert not [e for e in access if e["route"] in ("/healthz", "/readyz", "/metrics")]
