"""办件箱 in a real browser: the 衡阳市 approver finds a case 邵阳县 forwarded, looks at its
materials, asks for a supplement, accepts and decides with a result PDF uploaded through the
page — each step checked on the page and, through the API, on the other node."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from tests.support.api import ApiClient, pdf
from tests.support.browser import DESKTOP, PHONE, chromium, output_dir, overflowing, sign_in
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
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
PERSON = {
    "kind": "person",
    "name": "刘洋",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13973900002",
}
REQUIREMENT = "请补充基坑支护专项方案及专家论证意见"


def png(width: int = 40, height: int = 30) -> bytes:
    """A small valid PNG (a red rectangle): a scanned material shown as an image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xb4\x23\x2a" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def find(client: ApiClient, case_no: str) -> dict[str, Any] | None:
    listing = await client.ok("GET", f"/api/v1/cases?q={case_no}")
    matches = [c for c in listing["cases"] if c["case_no"] == case_no]
    return await client.ok("GET", f"/api/v1/cases/{matches[0]['id']}") if matches else None


async def until_status(client: ApiClient, case_no: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen["case"] = await find(client, case_no)
        return seen["case"] is not None and seen["case"]["status"] == status

    await wait_until(reached)
    return seen["case"]


async def submit_at_window(clerk: ApiClient) -> str:
    """邵阳县's clerk takes an application for 衡阳市's item; the first material is a PNG."""
    item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
    materials = await materials_for(clerk, item)
    scan = await clerk.upload(png(), "施工许可申请表.png")
    materials[0]["blob"] = scan["sha256"]
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
    return str(created["case"]["case_no"])


async def no_overflow_at_phone_width(page: Page, shot: Path) -> None:
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=shot, full_page=True)
    assert await overflowing(page) == []
    await page.set_viewport_size(DESKTOP)


async def test_approver_finds_supplements_accepts_and_decides_in_the_office(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    shaoyang, hengyang = await start_regions(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")]
    )
    shots = output_dir("test_approver_finds_supplements_accepts_and_decides_in_the_office")
    try:
        async with aiohttp.ClientSession() as http, chromium() as browser:
            clerk = await ApiClient(shaoyang.url, http).login("clerk")
            approver_api = await ApiClient(hengyang.url, http).login("approver")
            case_no = await submit_at_window(clerk)
            await until_status(approver_api, case_no, "forwarded")

            page = await browser.new_page(viewport=DESKTOP)
            dialogs: list[str] = []
            answers: set[asyncio.Future[None]] = set()

            def on_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                answers.add(asyncio.ensure_future(dialog.accept()))

            page.on("dialog", on_dialog)
            await sign_in(page, hengyang.url, "approver")
            assert page.url == f"{hengyang.url}/office"
            await page.screenshot(path=shots / "01-inbox.png", full_page=True)

            # The inbox: search by case number.
            await page.get_by_label("受理编号或申请人").fill(case_no)
            async with page.expect_navigation():
                await page.get_by_role("button", name="查询").click()
            rows = page.locator("tr.case-row")
            assert await rows.count() == 1
            row_text = await rows.first.inner_text()
            assert APPLICANT["name"] in row_text and "已转交" in row_text
            assert APPLICANT["id_number"] not in row_text  # masked as the API masks it
            assert "邵阳县 → 衡阳市" in row_text
            await page.screenshot(path=shots / "02-inbox-search.png", full_page=True)
            await no_overflow_at_phone_width(page, shots / "03-inbox-phone.png")

            # The case page: facts and material previews.
            async with page.expect_navigation():
                await page.get_by_role("link", name=case_no).click()
            assert re.search(r"/office/cases/\d+$", page.url)
            case_url = page.url
            facts = await page.locator("#facts").inner_text()
            assert APPLICANT["name"] in facts and "邵阳县（430523）" in facts
            assert "138****0001" in facts and APPLICANT["phone"] not in facts
            assert APPLICANT["id_number"] not in facts
            await page.wait_for_function(
                "() => { const i = document.querySelector('#materials img');"
                " return i && i.complete && i.naturalWidth === 40; }"
            )
            # A list with thumbnails; a PDF viewer only when one is opened (it made the page
            # take seconds). How long the page took is written beside the screenshots.
            timing = await page.evaluate(
                "() => { const n = performance.getEntriesByType('navigation')[0];"
                " return {load_ms: n.loadEventEnd - n.startTime,"
                " resources: performance.getEntriesByType('resource').length}; }"
            )
            (shots / "case-page-timing.json").write_text(json.dumps(timing), encoding="utf-8")
            print(f"office case page: {timing}")
            assert await page.locator("#materials object").count() == 0
            previews = page.locator("#materials details[data-pdf]")
            assert await previews.count() >= 1
            await previews.first.locator("summary").click()
            pdfs = page.locator("#materials object[type='application/pdf']")
            # The viewer is made by the toggle handler: wait for it, then there is exactly one.
            await expect(pdfs).to_have_count(1)
            source = await pdfs.first.get_attribute("data")
            assert source and source.startswith("/api/v1/files/")
            answer = await page.request.get(hengyang.url + source)
            assert answer.ok and answer.headers["content-type"] == "application/pdf"
            materials = await page.locator("#materials").inner_text()
            assert "容缺" in materials and "告知承诺" in materials
            # Only what the approver may do now: accept, supplement, refuse (no decision yet).
            assert await page.locator("#action-accept").count() == 1
            assert await page.locator("#action-request_supplement").count() == 1
            assert await page.locator("#action-decide").count() == 0
            await page.screenshot(path=shots / "04-case-forwarded.png", full_page=True)

            # 补正通知: an empty notice is refused with the API's field errors, then sent.
            notice = page.locator("#action-request_supplement")
            await notice.get_by_role("button", name="发送补正通知").click()
            await notice.locator(".field-error").first.wait_for()
            assert await notice.locator(".form-error").is_visible()
            errors = await notice.locator(".supp-item .field-error").all_inner_texts()
            assert any("补正要求" in e for e in errors), errors
            await notice.get_by_label("对应材料").select_option("M06")
            assert await notice.get_by_label("材料名称").input_value() == (
                "危险性较大的分部分项工程清单及安全管理措施"
            )
            await notice.get_by_label("补正要求").fill(REQUIREMENT)
            async with page.expect_navigation():
                await notice.get_by_role("button", name="发送补正通知").click()
            assert REQUIREMENT in await page.locator("#supplement-notice").inner_text()
            assert "补正中" in await page.locator("#case-status").inner_text()
            first_event = page.locator("#timeline li").first
            assert "补正通知" in await first_event.inner_text()
            assert "一次性告知 1 项" in await first_event.inner_text()
            assert await page.locator("#action-accept").count() == 0
            await page.screenshot(path=shots / "05-supplement-requested.png", full_page=True)

            # The notice reaches 邵阳县; its clerk relays the supplement (API).
            relayed = await until_status(clerk, case_no, "supplement_pending")
            assert relayed["details"]["supplement"]["items"][0]["requirement"] == REQUIREMENT
            extra = await clerk.upload(pdf("基坑支护专项方案"), "基坑支护专项方案.pdf")
            await clerk.act(
                relayed["id"],
                "supplement",
                {
                    "materials": [
                        {"code": "M06", "name": "基坑支护专项方案", "blob": extra["sha256"]}
                    ]
                },
            )
            await until_status(approver_api, case_no, "forwarded")
            await page.goto(case_url)
            assert "已于" in await page.locator("#supplement-notice").inner_text()
            assert await page.locator("#supplement-notice details[data-pdf]").count() == 1
            assert "补正材料" in await page.locator("#timeline li").first.inner_text()

            # 受理.
            accept = page.locator("#action-accept")
            await accept.get_by_label("受理意见（可选）").fill("材料齐全，予以受理")
            async with page.expect_navigation():
                await accept.get_by_role("button", name="受理").click()
            assert "已受理" in await page.locator("#case-status").inner_text()
            promised = await page.locator("#promised-date").inner_text()
            assert re.match(r"\d{4}年\d{1,2}月\d{1,2}日", promised)
            assert "受理" in await page.locator("#timeline li").first.inner_text()
            await page.screenshot(path=shots / "06-accepted.png", full_page=True)

            # 办结决定: a refusal (准予 without its result document) comes before the "cannot
            # be taken back" question, which is asked only about a decision the node would take.
            decide = page.locator("#action-decide")
            asked = len(dialogs)
            await decide.get_by_role("button", name="提交办结决定").click()
            await decide.get_by_text("准予决定须上传结果文书").wait_for()
            assert len(dialogs) == asked
            await decide.get_by_label("结果文书（PDF）").set_input_files(
                files=[
                    {
                        "name": "施工许可证.pdf",
                        "mimeType": "application/pdf",
                        "buffer": pdf("施工许可证 430400202611270001"),
                    }
                ]
            )
            await decide.get_by_text("已上传「施工许可证.pdf」").wait_for()
            assert await decide.get_by_label("文书名称").input_value() == "施工许可证"
            await decide.get_by_label("文书名称").fill("建筑工程施工许可证")
            await decide.get_by_label("证照编号（可选）").fill("430400202611270001")
            await page.screenshot(path=shots / "07-decide-form.png", full_page=True)
            async with page.expect_navigation():
                await decide.get_by_role("button", name="提交办结决定").click()
            assert "办结（准予）" in await page.locator("#case-status").inner_text()
            assert len(dialogs) == asked + 1 and "不能撤回" in dialogs[-1]
            decision = await page.locator("#decision").inner_text()
            assert "准予" in decision and "430400202611270001" in decision
            assert "建筑工程施工许可证" in decision
            assert await page.locator("#decision details[data-pdf]").count() == 1
            assert "办结决定" in await page.locator("#timeline li").first.inner_text()
            assert await page.locator("#no-actions").count() == 1
            await page.screenshot(path=shots / "08-decided.png", full_page=True)
            await no_overflow_at_phone_width(page, shots / "09-decided-phone.png")

            # 邵阳县 has the decision and the very document.
            result = await until_status(clerk, case_no, "approved")
            document = result["details"]["decision"]["documents"][0]
            assert document["name"] == "建筑工程施工许可证"
            assert await clerk.ok("GET", f"/api/v1/files/{document['blob']}") == pdf(
                "施工许可证 430400202611270001"
            )

            # Filters: the decided case is no longer among the forwarded ones.
            await page.goto(f"{hengyang.url}/office?status=forwarded")
            assert await page.locator(f"tr[data-case-no='{case_no}']").count() == 0
            await page.goto(f"{hengyang.url}/office?status=approved&partner=430523&side=handling")
            assert await page.locator(f"tr[data-case-no='{case_no}']").count() == 1
            await page.screenshot(path=shots / "10-inbox-filtered.png", full_page=True)
    finally:
        for node in (shaoyang, hengyang):
            await node.stop()


async def test_refusal_inspection_and_pause_forms_ask_only_for_their_payload(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    shaoyang, hengyang = await start_regions(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")]
    )
    shots = output_dir("test_refusal_inspection_and_pause_forms_ask_only_for_their_payload")
    try:
        async with aiohttp.ClientSession() as http, chromium() as browser:
            clerk = await ApiClient(shaoyang.url, http).login("clerk")
            approver_api = await ApiClient(hengyang.url, http).login("approver")
            refused_no = await submit_at_window(clerk)
            inspected_no = await submit_at_window(clerk)
            refused = await until_status(approver_api, refused_no, "forwarded")
            inspected = await until_status(approver_api, inspected_no, "forwarded")
            await approver_api.act(inspected["id"], "accept")

            page = await browser.new_page(viewport=DESKTOP)
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await sign_in(page, hengyang.url, "approver")

            # 不予受理: a reason, and the refusal reaches 邵阳县.
            await page.goto(f"{hengyang.url}/office/cases/{refused['id']}")
            await page.get_by_text("不予受理", exact=True).first.click()  # opens the details
            form = page.locator("#action-not_accept")
            await form.get_by_label("不予受理理由").fill("申请事项不属于本机关职权范围")
            async with page.expect_navigation():
                await form.get_by_role("button", name="不予受理").click()
            assert "不予受理" in await page.locator("#case-status").inner_text()
            assert "申请事项不属于本机关职权范围" in await page.locator("#timeline").inner_text()
            await page.screenshot(path=shots / "01-not-accepted.png", full_page=True)
            await until_status(clerk, refused_no, "not_accepted")

            # 安排勘验: Beijing time from a datetime-local field, the console link afterwards.
            await page.goto(f"{hengyang.url}/office/cases/{inspected['id']}")
            form = page.locator("#action-schedule_inspection")
            await form.get_by_label("勘验时间（北京时间）").fill("2026-12-30T09:30")
            await form.get_by_label("勘验地点（可选）").fill("衡阳市蒸湘区解放大道8号")
            async with page.expect_navigation():
                await form.get_by_role("button", name="安排勘验").click()
            section = await page.locator("#inspection").inner_text()
            assert "2026年12月30日 09:30" in section and "衡阳市蒸湘区解放大道8号" in section
            console = page.get_by_role("link", name="进入勘验控制台")
            assert re.search(
                r"^/inspection/[0-9a-f-]+/console$", await console.get_attribute("href") or ""
            )
            assert "勘验中" in await page.locator("#case-status").inner_text()
            await page.screenshot(path=shots / "02-inspection-scheduled.png", full_page=True)
            scheduled = await until_status(clerk, inspected_no, "inspection")
            assert scheduled["details"]["inspection"]["scheduled_at"].startswith(
                "2026-12-30T09:30:00+08:00"
            )

            # 暂停计时 (special procedure): only kind, reason and procedure are sent.
            await page.get_by_text("办理进度（暂停、恢复计时或延期）").click()
            form = page.locator("#action-progress")
            await form.get_by_label("进度类型").select_option("pause")
            await form.get_by_label("原因").fill("组织专家评审")
            await form.get_by_label("特别程序（暂停时填写）").select_option("expert_review")
            await form.get_by_label("延长工作日数（延期时填写）").fill("3")  # ignored for a pause
            async with page.expect_navigation():
                await form.get_by_role("button", name="提交").click()
            assert "暂停计时" in await page.locator("#case-status").inner_text()
            assert "组织专家评审" in await page.locator("#facts").inner_text()
            await page.screenshot(path=shots / "03-paused.png", full_page=True)
            await page.set_viewport_size(PHONE)
            await page.screenshot(path=shots / "04-paused-phone.png", full_page=True)
            assert await overflowing(page) == []
    finally:
        for node in (shaoyang, hengyang):
            await node.stop()


async def test_a_joint_application_shows_its_combined_status_and_parts(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    shaoyang, hengyang, dongying = await start_regions(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市"), ("370500", "东营市")]
    )
    shots = output_dir("test_a_joint_application_shows_its_combined_status_and_parts")
    try:
        async with aiohttp.ClientSession() as http, chromium() as browser:
            clerk = await ApiClient(shaoyang.url, http).login("clerk")
            approver_api = await ApiClient(hengyang.url, http).login("approver")
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
            first, second = bundle["cases"]
            await until_status(approver_api, first["case_no"], "forwarded")

            # At the window: both parts in the inbox, one combined status on each.
            page = await browser.new_page(viewport=DESKTOP)
            await sign_in(page, shaoyang.url, "clerk")
            await page.goto(f"{shaoyang.url}/office?q={bundle['bundle_no']}")
            assert await page.locator("tr.case-row").count() == 2
            async with page.expect_navigation():
                await page.get_by_role("link", name=first["case_no"]).click()
            joint = await page.locator("#bundle").inner_text()
            assert (
                "异地购房落户并开办企业一件事" in joint
                and "办理中" in joint
                and "已办结 0/2" in joint
            )
            assert await page.locator("#bundle").get_by_role("link", name=second["case_no"]).count()
            # The window's own actions only (no 受理 here).
            assert await page.locator("#action-accept").count() == 0
            assert await page.locator("#action-withdraw").count() == 1
            await page.screenshot(path=shots / "01-bundle-at-window.png", full_page=True)

            # At the handling region: the part knows its bundle.
            incoming = await find(approver_api, first["case_no"])
            assert incoming is not None
            approver_page = await browser.new_page(viewport=DESKTOP)
            await sign_in(approver_page, hengyang.url, "approver")
            await approver_page.goto(f"{hengyang.url}/office/cases/{incoming['id']}")
            part = await approver_page.locator("#bundle").inner_text()
            assert "异地购房落户并开办企业一件事" in part and bundle["bundle_no"] in part
            await approver_page.screenshot(path=shots / "02-part-at-handling.png", full_page=True)
    finally:
        for node in (shaoyang, hengyang, dongying):
            await node.stop()
