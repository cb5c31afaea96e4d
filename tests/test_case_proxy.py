"""异地代收代办 end to end through two real nodes: a clerk in 邵阳县 takes an application for an
item 衡阳市 decides; 补正, 受理, 决定 with a result PDF, 出件, 送达, the citizen's rating, a
差评 rectification with follow-up — each step seen on both nodes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from node.cases.cli import verify_cases
from node.cases.models import ratings
from tests.support.api import ApiClient, pdf
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for, start_regions
from tests.support.waiting import wait_until

ITEM = "430400-XK-0001"  # 建筑工程施工许可（分阶段办理）, decided by 衡阳市
APPLICANT = {
    "kind": "org",
    "name": "邵阳县宏达建设有限公司",
    "id_type": "unified_social_credit_code",
    "id_number": "91430523MA4L0X1T2N",
    "phone": "13807390001",
}


@pytest.fixture
async def regions(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    nodes = await start_regions(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    yield nodes
    for node in nodes:
        await node.stop()


async def find(client: ApiClient, case_no: str) -> dict[str, Any] | None:
    listing = await client.ok("GET", f"/api/v1/cases?q={case_no}")
    matches = [c for c in listing["cases"] if c["case_no"] == case_no]
    return await client.ok("GET", f"/api/v1/cases/{matches[0]['id']}") if matches else None


async def until_status(client: ApiClient, case_no: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        case = await find(client, case_no)
        seen["case"] = case
        return case is not None and case["status"] == status

    await wait_until(reached)
    return seen["case"]


async def test_proxy_case_walks_from_window_to_rating_across_two_nodes(
    regions: list[RunningNode],
) -> None:
    shaoyang, hengyang = regions
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        supervisor = await ApiClient(hengyang.url, http).login("supervisor")
        citizen = ApiClient(shaoyang.url, http)

        # The window tells the applicant everything at once: the partner's item is known here.
        item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
        assert item["handling_region"] == "430400"
        materials = await materials_for(clerk, item)
        created = await clerk.ok(
            "POST",
            "/api/v1/cases",
            {
                "item_code": ITEM,
                "mode": "proxy",
                "applicant": APPLICANT,
                "form": form_for(
                    item, project_name="宏达商业广场", construction_stage="土方开挖与基坑支护"
                ),
                "materials": materials,
                "identity_verified": True,
                "delivery": {"method": "mail", "address": "湖南省邵阳县塘渡口镇建设路1号"},
            },
            status=201,
        )
        case_no, code = created["case"]["case_no"], created["query_code"]
        assert created["case"]["status"] == "forwarded"
        assert created["case"]["applicant_id_number"] != APPLICANT["id_number"]  # masked in lists
        # 容缺 (M04): the window fixes the catch-up deadline at 收件.
        deferred_until = created["case"]["deferred_until"]
        assert deferred_until and created["case"]["deferred_status"] == "normal"
        here = await clerk.ok("GET", f"/api/v1/cases/{created['case']['id']}")
        assert [(m["code"], m["caught_up"]) for m in here["deferred"]] == [("M04", False)]
        assert [m["code"] for m in here["pledged"]] == ["M05"]  # 告知承诺
        assert here["events"][0]["actor"] == "clerk"
        assert here["events"][0]["actor_name"] == "王芳"  # the display name, not the login

        # 衡阳市 finds it in its inbox with the materials, and asks for a supplement.
        incoming = await until_status(approver, case_no, "forwarded")
        assert incoming["deferred_until"] == deferred_until
        assert incoming["application"]["received_by"]["clerk"] == "王芳"
        assert incoming["events"][0]["actor_name"] == "王芳"
        provided = [m for m in incoming["application"]["materials"] if m["status"] == "provided"]
        first = await approver.ok("GET", f"/api/v1/files/{provided[0]['blob']}")
        assert hashlib.sha256(first).hexdigest() == provided[0]["blob"]
        await approver.act(
            incoming["id"],
            "request_supplement",
            {
                "items": [
                    {
                        "material_code": "M06",
                        "name": "危险性较大的分部分项工程清单",
                        "requirement": "请补充基坑支护专项方案及专家论证意见",
                    }
                ],
            },
        )
        relayed = await until_status(clerk, case_no, "supplement_pending")
        notice = relayed["details"]["supplement"]
        assert notice["items"][0]["requirement"].startswith("请补充基坑支护")
        # One notice with its deadline (the item's 5 working days), the same on both nodes.
        handling_notice = (await find(approver, case_no))["details"]["supplement"]  # type: ignore[index]
        assert notice["deadline"] == handling_notice["deadline"] > notice["requested_on"]
        assert notice["approver"] == "李明"
        looked_up = await citizen.ok("GET", f"/api/v1/public/cases/{case_no}?code={code}")
        assert looked_up["supplement"]["items"][0]["name"] == "危险性较大的分部分项工程清单"
        assert looked_up["supplement"]["deadline"] == notice["deadline"]
        assert looked_up["deferred"]["deferred_until"] == deferred_until
        assert looked_up["deferred"]["materials"][0]["caught_up"] is False
        assert looked_up["pledged"] == ["建设资金已经落实承诺书"]

        # The clerk relays the supplement; the approver accepts; the promised date travels back.
        extra = await clerk.upload(pdf("基坑支护专项方案"), "基坑支护专项方案.pdf")
        await clerk.act(
            relayed["id"],
            "supplement",
            {"materials": [{"code": "M06", "name": "基坑支护专项方案", "blob": extra["sha256"]}]},
        )
        back = await until_status(approver, case_no, "forwarded")
        accepted = await approver.act(back["id"], "accept", {"note": "材料齐全，予以受理"})
        assert accepted["status"] == "accepted" and accepted["promised_date"]
        mirrored = await until_status(clerk, case_no, "accepted")
        assert mirrored["promised_date"] == accepted["promised_date"]
        assert mirrored["deadline"] == accepted["deadline"]
        assert mirrored["time_status"] == accepted["time_status"]
        # The warning lead is fixed at 受理 (the item's 1 day) and stored on both nodes.
        assert mirrored["warning_days"] == accepted["warning_days"] == 1
        assert mirrored["warning_from"] == accepted["warning_from"]
        assert mirrored["events"][-1]["actor_name"] == "李明"

        # Decision with the licence PDF; the receiving region gets the document itself.
        licence = await approver.upload(pdf("施工许可证 430400202611220001"), "施工许可证.pdf")
        decided = await approver.act(
            accepted["id"],
            "decide",
            {
                "outcome": "approved",
                "certificate_no": "430400202611220001",
                "documents": [{"blob": licence["sha256"], "name": "建筑工程施工许可证"}],
            },
        )
        assert decided["status"] == "approved"
        result = await until_status(clerk, case_no, "approved")
        document = result["details"]["decision"]["documents"][0]
        assert await clerk.ok("GET", f"/api/v1/files/{document['blob']}") == pdf(
            "施工许可证 430400202611220001"
        )

        # The licence is not handed out before the 容缺 material is in.
        refused = await clerk.act(result["id"], "dispatch", {"method": "window"}, status=409)
        assert refused["error"] == "deferred_outstanding"
        late = await clerk.upload(pdf("施工现场安全措施"), "M04.pdf")
        caught = await clerk.act(
            result["id"], "catch_up", {"materials": [{"code": "M04", "blob": late["sha256"]}]}
        )
        assert caught["deferred_until"] is None and caught["deferred"][0]["caught_up"]
        again = await clerk.act(
            result["id"], "catch_up", {"materials": [{"code": "M04", "blob": late["sha256"]}]}, 409
        )
        assert again["error"] == "nothing_deferred"

        async def caught_up_there() -> bool:
            case = await find(approver, case_no)
            return case is not None and case["deferred_until"] is None

        await wait_until(caught_up_there)
        there = await find(approver, case_no)
        assert there is not None and there["deferred"][0]["blob"] == late["sha256"]
        assert await approver.ok("GET", f"/api/v1/files/{late['sha256']}") == pdf(
            "施工现场安全措施"
        )
        assert there["events"][-1]["action"] == "catch_up"
        assert there["events"][-1]["actor_name"] == "王芳"

        # Dispatch by mail and delivery, both reported back to the handling region.
        await clerk.act(
            result["id"],
            "dispatch",
            {"method": "mail", "courier": "中国邮政EMS", "tracking_no": "EA123456789CN"},
        )
        delivered = await clerk.act(result["id"], "deliver", {"recipient": "张伟"})
        assert delivered["status"] == "delivered"
        await until_status(approver, case_no, "delivered")

        # The citizen looks the case up and rates it 2: a rectification opens in 衡阳市.
        assert (await citizen.call("GET", f"/api/v1/public/cases/{case_no}?code=000000"))[0] == 404
        view = await citizen.ok("GET", f"/api/v1/public/cases/{case_no}?code={code}")
        assert view["status"] == "delivered" and view["can_rate"]
        assert any("已受理" in step["text"] for step in view["timeline"])
        await citizen.ok(
            "POST",
            f"/api/v1/public/cases/{case_no}/rating",
            {"code": code, "level": 2, "stage": "decide", "comment": "邮寄慢了两天"},
            status=201,
        )

        async def rectification_open() -> bool:
            board = await supervisor.ok("GET", "/api/v1/supervision")
            return any(r["case_no"] == case_no for r in board["open_rectifications"])

        await wait_until(rectification_open)
        board = await supervisor.ok("GET", "/api/v1/supervision")
        [open_rating] = [r for r in board["open_rectifications"] if r["case_no"] == case_no]
        # The packaged calendar ends with 2026: from November the supervisor is warned.
        calendar = await supervisor.ok("GET", "/api/v1/calendar")
        assert board["calendar"]["next_year_missing"] is calendar["next_year_missing"]
        if calendar["next_year_missing"]:
            assert "节假日安排" in board["calendar"]["message"]
        assert open_rating["level"] == 2 and open_rating["rectification_due"]
        await supervisor.act(
            open_rating["case_id"],
            "rectify",
            {
                "rating_id": open_rating["rating_id"],
                "rectification": "已与邮政约定加急寄递",
                "follow_up": {"result": "申请人表示认可", "satisfied": True},
            },
        )
        board = await supervisor.ok("GET", "/api/v1/supervision")
        assert not [r for r in board["open_rectifications"] if r["case_no"] == case_no]

        async def rectified_at_window() -> bool:
            case = await find(clerk, case_no)
            return case is not None and case["events"][-1]["action"] == "rectify"

        await wait_until(rectified_at_window)
        window_copy = await find(clerk, case_no)
        assert window_copy is not None
        assert window_copy["events"][-1]["data"]["rating_id"] == open_rating["rating_id"]
        async with shaoyang.db.read() as conn:
            follow_up = (
                await conn.execute(
                    select(ratings.c.follow_up).where(
                        ratings.c.rating_id == open_rating["rating_id"]
                    )
                )
            ).scalar_one()
        # The 回访 record travelled back, signed with the supervisor's name.
        assert json.loads(follow_up)["by"] == "陈静"

    # Both nodes' audit chains are intact.
    for node in regions:
        checked, faults = await verify_cases(node.db)
        assert checked == 1 and faults == []
