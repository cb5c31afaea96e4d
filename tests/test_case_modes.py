"""全程网办 on the handling region's own node, and 多地联办 fanned out to three nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.api import ApiClient, pdf
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.identity import CLIENT_ID, LIU_YANG, identity_toml, running_provider
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for, start_regions
from tests.support.waiting import wait_until

PERSON = {
    "kind": "person",
    "name": "刘洋",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13973900002",
}


#: The ID token of PERSON (the province's identity service vouches for online applicants).
APPLICANT_TOKEN: list[str] = []


@pytest.fixture
async def three(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    async with running_provider() as idp:
        nodes = await start_regions(
            tmp_path,
            databases,
            [("430523", "邵阳县"), ("430400", "衡阳市"), ("370500", "东营市")],
            extra_toml=identity_toml(idp.provider.issuer),
        )
        APPLICANT_TOKEN[:] = [idp.provider.issue(LIU_YANG, CLIENT_ID)]
        yield nodes
        for node in nodes:
            await node.stop()


async def test_online_application_is_handled_on_one_node_without_envelopes(
    three: list[RunningNode],
) -> None:
    _shaoyang, hengyang, _dongying = three
    async with aiohttp.ClientSession() as http:
        citizen = ApiClient(hengyang.url, http)
        citizen.token = APPLICANT_TOKEN[0]
        item = await citizen.ok("GET", "/api/v1/catalog/430400-XK-0002")
        created = await citizen.ok(
            "POST",
            "/api/v1/public/applications",
            {
                "item_code": "430400-XK-0002",
                "applicant": PERSON,
                "form": form_for(item, business_name="刘洋足浴店"),
                "materials": await materials_for(citizen, item, public=True),
                "delivery": {"method": "window", "address": None},
            },
            status=201,
        )
        case = created["case"]
        assert case["mode"] == "online" and case["status"] == "received"
        assert case["receiving_region"] == case["handling_region"] == "430400"
        approver = await ApiClient(hengyang.url, http).login("approver")
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        await approver.act(case["id"], "accept")
        licence = await approver.upload(pdf("卫生许可证"), "卫生许可证.pdf")
        await approver.act(
            case["id"],
            "decide",
            {
                "outcome": "approved",
                "documents": [{"blob": licence["sha256"], "name": "公共场所卫生许可证"}],
            },
        )
        # 容缺 (M04, M06) must be caught up before the licence is handed out.
        refused = await clerk.act(case["id"], "dispatch", {"method": "window"}, status=409)
        assert refused["error"] == "deferred_outstanding"
        caught = []
        detail = await clerk.ok("GET", f"/api/v1/cases/{case['id']}")
        assert detail["deferred_until"] and detail["deferred_status"] == "normal"
        for material in detail["deferred"]:
            upload = await clerk.upload(pdf(material["name"]), f"{material['code']}.pdf")
            caught.append({"code": material["code"], "blob": upload["sha256"]})
        assert [c["code"] for c in caught] == ["M04", "M06"]
        after = await clerk.act(case["id"], "catch_up", {"materials": caught})
        assert after["deferred_until"] is None and all(m["caught_up"] for m in after["deferred"])
        await clerk.act(case["id"], "dispatch", {"method": "window"})
        done = await clerk.act(case["id"], "deliver", {"recipient": "刘洋"})
        assert done["status"] == "delivered"
        assert all("envelope" not in e["data"] for e in done["events"])
        view = await citizen.ok(
            "GET", f"/api/v1/public/cases/{case['case_no']}?code={created['query_code']}"
        )
        assert view["status_label"] == "已送达"


async def test_online_application_refuses_a_partner_item(three: list[RunningNode]) -> None:
    _shaoyang, hengyang, _dongying = three
    async with aiohttp.ClientSession() as http:
        citizen = ApiClient(hengyang.url, http)
        citizen.token = APPLICANT_TOKEN[0]
        status, body = await citizen.call(
            "POST",
            "/api/v1/public/applications",
            {
                "item_code": "370500-XK-0001",
                "applicant": PERSON,
                "form": {},
                "materials": [],
                "delivery": {"method": "window", "address": None},
            },
        )
    assert status == 400
    assert "mode" in {f["field"] for f in body["fields"]}


async def test_joint_application_fans_out_and_completes_when_every_part_is_done(
    three: list[RunningNode],
) -> None:
    shaoyang, hengyang, dongying = three
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        parts = []
        for code in ("430400-DJ-0001", "370500-DJ-0001"):
            item = await clerk.ok("GET", f"/api/v1/catalog/{code}")
            parts.append(
                {
                    "item_code": code,
                    "form": form_for(item),
                    "materials": await materials_for(clerk, item),
                }
            )
        created = await clerk.ok(
            "POST",
            "/api/v1/bundles",
            {
                "name": "异地购房落户并开办企业一件事",
                "applicant": PERSON,
                "parts": parts,
                "identity_verified": True,
                "delivery": {"method": "window", "address": None},
            },
            status=201,
        )
        bundle = created["bundle"]
        assert [c["handling_region"] for c in bundle["cases"]] == ["430400", "370500"]
        assert {c["case_no"] for c in bundle["cases"]} == {
            f"{bundle['bundle_no']}-1",
            f"{bundle['bundle_no']}-2",
        }
        status = await clerk.ok("GET", f"/api/v1/bundles/{bundle['id']}")
        assert status["combined_status"] == "in_progress" and status["parts_done"] == 0

        for node, part in ((hengyang, bundle["cases"][0]), (dongying, bundle["cases"][1])):
            approver = await ApiClient(node.url, http).login("approver")

            async def arrived(a: ApiClient = approver, p: dict = part) -> bool:  # type: ignore[type-arg]
                listing = await a.ok("GET", f"/api/v1/cases?q={p['case_no']}")
                return bool(listing["cases"])

            await wait_until(arrived)
            [incoming] = (await approver.ok("GET", f"/api/v1/cases?q={part['case_no']}"))["cases"]
            detail = await approver.ok("GET", f"/api/v1/cases/{incoming['id']}")
            assert detail["application"]["bundle"]["parts"] == 2
            await approver.act(incoming["id"], "accept")
            doc = await approver.upload(pdf(part["case_no"]), "决定书.pdf")
            await approver.act(
                incoming["id"],
                "decide",
                {
                    "outcome": "approved",
                    "documents": [{"blob": doc["sha256"], "name": "登记决定书"}],
                },
            )

        async def all_done() -> bool:
            return (await clerk.ok("GET", f"/api/v1/bundles/{bundle['id']}"))[
                "combined_status"
            ] == "done"

        await wait_until(all_done)
        final = await clerk.ok("GET", f"/api/v1/bundles/{bundle['id']}")
        assert final["parts_done"] == 2 and final["combined_status_label"] == "全部办结"
