"""The citizen's page in a real browser at phone width: a case taken at the 邵阳县 window for an
item 衡阳市 decides is looked up with its number and query code (补正 notice, timeline), a wrong
code gets the generic answer, and after the decision and delivery the citizen rates it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from tests.support.api import ApiClient, pdf
from tests.support.browser import PHONE, chromium, output_dir, overflowing
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


async def _case(client: ApiClient, case_no: str) -> dict[str, Any] | None:
    listing = await client.ok("GET", f"/api/v1/cases?q={case_no}")
    found = [c for c in listing["cases"] if c["case_no"] == case_no]
    return await client.ok("GET", f"/api/v1/cases/{found[0]['id']}") if found else None


async def _until(client: ApiClient, case_no: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen["case"] = await _case(client, case_no)
        return seen["case"] is not None and seen["case"]["status"] == status

    await wait_until(reached)
    return seen["case"]


async def _look_up(page: Page, base_url: str, case_no: str, code: str) -> None:
    """What the 收件凭证's QR code leads to: the number is filled in, the person types the code."""
    await page.goto(f"{base_url}/query?case={case_no}")
    assert await page.get_by_label("受理编号").input_value() == case_no
    await page.get_by_label("查询码").fill(code)
    await page.get_by_role("button", name="查询").click()
    await page.wait_for_load_state()


async def test_citizen_follows_and_rates_a_case_on_a_phone(regions: list[RunningNode]) -> None:
    shaoyang, hengyang = regions
    shots = output_dir("test_citizen_follows_and_rates_a_case_on_a_phone")
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
        materials = []
        for material in item["materials"]:
            if material["required"]:
                upload = await clerk.upload(pdf(material["name"]), f"{material['code']}.pdf")
                materials.append(
                    {"code": material["code"], "status": "provided", "blob": upload["sha256"]}
                )
        created = await clerk.ok(
            "POST",
            "/api/v1/cases",
            {
                "item_code": ITEM,
                "mode": "proxy",
                "applicant": APPLICANT,
                "form": form_for(item, project_name="宏达商业广场"),
                "materials": materials,
                "identity_verified": True,
                "delivery": {"method": "mail", "address": "湖南省邵阳县塘渡口镇建设路1号"},
            },
            status=201,
        )
        case_no, code = created["case"]["case_no"], created["query_code"]
        incoming = await _until(approver, case_no, "forwarded")
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
                ]
            },
        )
        at_window = await _until(clerk, case_no, "supplement_pending")

        async with chromium() as browser:
            page = await browser.new_page(viewport=PHONE)

            # The query form; the QR code's ?case= fills in the number only.
            await page.goto(f"{shaoyang.url}/query?case={case_no}")
            await page.screenshot(path=shots / "1-query-form.png", full_page=True)
            assert await overflowing(page) == []

            # A wrong code: the same answer as an unknown number, the number is kept.
            await page.get_by_label("查询码").fill("000000")
            await page.get_by_role("button", name="查询").click()
            error = page.locator("#query-error")
            assert "请核对受理编号和查询码" in await error.inner_text()
            assert await page.get_by_label("受理编号").input_value() == case_no
            await page.screenshot(path=shots / "2-wrong-code.png", full_page=True)
            await page.goto(f"{shaoyang.url}/query?case=430523-20000101-99999")
            await page.get_by_label("查询码").fill(code)
            await page.get_by_role("button", name="查询").click()
            assert await error.inner_text() == (
                "未找到办件。请核对受理编号和查询码（见收件凭证）后重试。"
            )

            # The supplement notice, with every item and the deadline; the code is not in the URL.
            await _look_up(page, shaoyang.url, case_no, code)
            assert code not in page.url
            assert await page.locator("#case-status").inner_text() == "补正中"
            notice = await page.locator("#supplement").inner_text()
            assert "危险性较大的分部分项工程清单" in notice
            assert "请补充基坑支护专项方案及专家论证意见" in notice
            steps = await page.locator("#timeline").inner_text()
            assert "窗口已收件" in steps
            # The relayed notice's deadline, in the 补正 step too.
            y, m, d = (int(p) for p in at_window["details"]["supplement"]["deadline"].split("-"))
            assert f"需要补正材料，请在 {y}年{m}月{d}日 前到收件窗口补交" in steps
            assert await page.locator("#rate").count() == 0  # nothing to rate yet
            assert await overflowing(page) == []
            await page.screenshot(path=shots / "3-supplement.png", full_page=True)

            # Supplement, 受理, 决定, 出件, 送达 — through the API of both nodes.
            extra = await clerk.upload(pdf("基坑支护专项方案"), "基坑支护专项方案.pdf")
            await clerk.act(
                at_window["id"],
                "supplement",
                {
                    "materials": [
                        {"code": "M06", "name": "基坑支护专项方案", "blob": extra["sha256"]}
                    ]
                },
            )
            back = await _until(approver, case_no, "forwarded")
            accepted = await approver.act(back["id"], "accept")
            await _until(clerk, case_no, "accepted")
            await _look_up(page, shaoyang.url, case_no, code)
            assert await page.locator("#case-status").inner_text() == "已受理"
            promised = accepted["promised_date"]
            year, month, day = (int(p) for p in promised.split("-"))
            assert f"{year}年{month}月{day}日" in await page.locator("#promised-date").inner_text()
            await page.screenshot(path=shots / "4-accepted.png", full_page=True)

            licence = await approver.upload(pdf("施工许可证 430400202611270001"), "许可证.pdf")
            await approver.act(
                back["id"],
                "decide",
                {
                    "outcome": "approved",
                    "certificate_no": "430400202611270001",
                    "documents": [{"blob": licence["sha256"], "name": "建筑工程施工许可证"}],
                },
            )
            result = await _until(clerk, case_no, "approved")
            await clerk.act(
                result["id"],
                "dispatch",
                {"method": "mail", "courier": "中国邮政EMS", "tracking_no": "EA123456789CN"},
            )
            await clerk.act(result["id"], "deliver", {"recipient": "张伟"})

            await _look_up(page, shaoyang.url, case_no, code)
            assert await page.locator("#case-status").inner_text() == "已送达"
            timeline = await page.locator("#timeline").inner_text()
            for step in ("已受理", "已办结：准予办理", "结果已出件", "结果已送达"):
                assert step in timeline
            assert "EA123456789CN" in await page.locator("#dispatch").inner_text()
            assert await overflowing(page) == []
            await page.screenshot(path=shots / "5-delivered-rating-form.png", full_page=True)

            # A 差评 needs a reason: the form says so next to the comment and keeps the choice.
            await page.get_by_label("不满意", exact=True).check()
            await page.get_by_role("button", name="提交评价").click()
            assert "请写下不满意的具体原因" in await page.locator("#comment-error").inner_text()
            assert await page.get_by_label("不满意", exact=True).is_checked()
            await page.screenshot(path=shots / "6-rating-needs-reason.png", full_page=True)

            # A good rating with a comment: thanks, and the rating shows instead of the form.
            await page.get_by_label("满意", exact=True).check()
            await page.get_by_label("评价意见").fill("窗口服务热情，邮寄很快")
            await page.get_by_role("button", name="提交评价").click()
            assert "感谢您的评价" in await page.locator("#rating-thanks").inner_text()
            ratings = await page.locator("#ratings").inner_text()
            assert "满意" in ratings and "窗口服务热情，邮寄很快" in ratings
            assert await page.locator("#rate").count() == 0  # rated once, no second form
            await page.screenshot(path=shots / "7-rated.png", full_page=True)

        # The rating travelled to the handling region (channel 2, mobile).
        async def rated_there() -> bool:
            case = await _case(approver, case_no)
            return case is not None and case["events"][-1]["action"] == "rate"

        await wait_until(rated_there)


async def test_bundle_lookup_and_rate_limit_without_a_browser(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    """多地联办: the bundle number and its code show every part; too many look-ups get the
    friendly 429 page (the API's buckets), and the code never appears in a URL."""
    nodes = await start_regions(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市"), ("370500", "东营市")]
    )
    try:
        shaoyang = nodes[0]
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
                    "name": "异地购房并开办企业一件事",
                    "applicant": {
                        "kind": "person",
                        "name": "刘洋",
                        "id_type": "resident_id",
                        "id_number": "11010519491231002X",
                        "phone": "13973900002",
                    },
                    "parts": parts,
                    "identity_verified": True,
                    "delivery": {"method": "window", "address": None},
                },
                status=201,
            )
            bundle, code = created["bundle"], created["query_code"]
            async with http.post(
                f"{shaoyang.url}/query", data={"case_no": bundle["bundle_no"], "code": code}
            ) as resp:
                page = await resp.text()
                assert resp.status == 200
                assert resp.headers["Cache-Control"] == "no-store"
            assert "多地联办进度" in page and "共 2 项，已办结 0 项" in page
            for part in bundle["cases"]:
                assert part["case_no"] in page

            # One part in detail, from the bundle page's button (a POST again).
            first = bundle["cases"][0]["case_no"]
            async with http.post(
                f"{shaoyang.url}/query", data={"case_no": first, "code": code}
            ) as resp:
                assert resp.status == 200 and "已转交" in await resp.text()

            # Missing fields, then the rate limit: a friendly page, not an error dump.
            async with http.post(f"{shaoyang.url}/query", data={"case_no": first}) as resp:
                assert resp.status == 400 and "请填写受理编号和查询码" in await resp.text()
            statuses = []
            for _ in range(12):
                async with http.post(
                    f"{shaoyang.url}/query", data={"case_no": first, "code": "000000"}
                ) as resp:
                    statuses.append(resp.status)
                    text = await resp.text()
            assert statuses[0] == 404 and statuses[-1] == 429
            assert "查询过于频繁，请稍等一分钟后再试" in text
            # The API shares the buckets: no way around the limit.
            async with http.get(
                f"{shaoyang.url}/api/v1/public/cases/{first}", params={"code": code}
            ) as resp:
                assert resp.status == 429
    finally:
        for node in nodes:
            await node.stop()
