"""Logs are JSON lines with ids (case, route, envelope) and no personal data: a case walked
across two nodes served as `tongban run` serves them leaves no ID number, phone, name,
address or query code in any log line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from node.app import create_app
from node.logging_setup import JsonAccessLogger, JsonFormatter
from tests.support.api import ApiClient
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.nodes import RunningNode, make_configs
from tests.support.regions import fetch_partner_catalogues, materials_for, provision
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
    await fetch_partner_catalogues(nodes)
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
        async with http.post(
            hengyang.url + "/federation/v1/envelopes",
            data=b"not.a.jws",
            headers={"Content-Type": "application/jose"},
        ) as refused:
            assert refused.status == 400

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
    # Delivered envelopes (the case's submission, its acceptance) are stored, not logged one
    # by one; refused ones are (ours, and a submission sent before its files: 409).
    envelopes = [e for e in access if e["route"] == "/federation/v1/envelopes"]
    assert ("POST", 400) in [(e["method"], e["status"]) for e in envelopes]
    assert all(e["status"] >= 400 for e in envelopes)


async def test_a_database_error_logs_no_personal_data(
    pair: list[RunningNode], captured: io.StringIO
) -> None:
    """A case insert that the database refuses (a unique index an operator added: a real
    constraint violation) fails the request with a 500; its log lines name the error but hold
    none of the applicant's data: no SQL parameters, no key values in the driver's message."""
    from sqlalchemy import text

    shaoyang, _hengyang = pair
    async with shaoyang.db.write() as conn:
        await conn.execute(
            text(
                "CREATE UNIQUE INDEX ix_test_one ON cases (applicant_name, applicant_phone_masked)"
            )
        )
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
        application = {
            "item_code": ITEM,
            "mode": "proxy",
            "applicant": APPLICANT,
            "form": form_for(item),
            "materials": await materials_for(clerk, item),
            "identity_verified": True,
            "delivery": {"method": "mail", "address": ADDRESS},
        }
        await clerk.ok("POST", "/api/v1/cases", application, status=201)
        status, _body = await clerk.call("POST", "/api/v1/cases", application)
    assert status == 500
    entries = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    failures = [e for e in entries if e["level"] == "error" and "exc" in e]
    assert failures, "the database error was not logged"
    assert any("IntegrityError" in e["exc"] for e in failures)
    text_ = captured.getvalue()
    for secret in (APPLICANT["id_number"], APPLICANT["phone"], APPLICANT["name"], ADDRESS):
        assert secret not in text_, f"personal data in logs: {secret}"
    assert json.dumps(APPLICANT["name"])[1:-1] not in text_
    for entry in failures:
        assert "[parameters:" not in entry["exc"]
        # No digest either (the query code's hash is one of the parameters).
        assert not re.search(r"[0-9a-f]{32}", entry["exc"] + entry["msg"]), entry["exc"]


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("applicant 11010519491231002X phone 13973900002", "applicant"),
        ("Key (applicant_id_number)=(43052319900101123x) already exists", "already exists"),
        ("Key (applicant_name)=(欧阳娜娜) already exists.", "already exists"),
        ("DETAIL:  Failing row contains (7, 欧阳娜娜, null).", "Failing row"),
        ("query_hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "query"),
    ],
)
def test_scrubbing_masks_id_numbers_phones_and_digests(raw: str, kept: str) -> None:
    record = logging.makeLogRecord({"msg": "failed: %s", "args": (raw,), "levelno": 40})
    try:
        raise ValueError(raw)
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    for value in ("11010519491231002X", "13973900002", "43052319900101123x", "9f86d", "欧阳"):
        assert value not in entry["msg"] and value not in entry["exc"]
    assert kept in entry["msg"] and kept in entry["exc"]
    # Ids that are not personal data stay readable: case numbers, times, kids, jtis.
    plain = "case 430523-20261127-0001 at 1782864000.5 kid 430523:f23240553658e93d"
    plain += " jti 0b7c6a52-9d4e-4c1e-8f0a-3c2b1d0e9f8a"
    record = logging.makeLogRecord({"msg": plain})
    assert json.loads(JsonFormatter().format(record))["msg"] == plain
