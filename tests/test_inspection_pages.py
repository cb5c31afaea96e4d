"""A video session walked through the pages people use, before and after it ends: the
window's invitation (its QR code decoded from a real screenshot), the citizen's /query page,
the applicant's join page, the console, the error pages people see, and the signed record's
list of participants. Screenshots at 1280 px (staff) and 390 px (citizen) go to
test-output/<test>/."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import Browser, Page

from protocol.evidence import verify_manifest
from tests.support.api import ApiClient
from tests.support.browser import chromium, output_dir, overflowing, sign_in
from tests.support.inspections import (
    APPLICANT,
    accepted_case_with_code,
    schedule,
    until,
    ws_url,
)
from tests.support.media import Client
from tests.support.nodes import RunningNode
from tests.support.qr import decode_qr

STAFF = {"width": 1280, "height": 900}
CITIZEN = {"width": 390, "height": 844}
#: Display names of the provisioned staff (tests/support/regions.py).
NAMES = {"approver": "李明", "inspector": "赵强"}


async def _staff_page(browser: Browser, node: RunningNode, username: str) -> Page:
    context = await browser.new_context(viewport=STAFF, locale="zh-CN")
    page = await context.new_page()
    await sign_in(page, node.url, username)
    return page


async def _citizen_page(browser: Browser) -> Page:
    context = await browser.new_context(
        viewport=CITIZEN, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    return await context.new_page()


async def _query(page: Page, node: RunningNode, case_no: str, code: str) -> str:
    await page.goto(f"{node.url}/query?case={case_no}")
    await page.get_by_label("查询码").fill(code)
    await page.get_by_role("button", name="查询").click()
    await page.wait_for_load_state()
    return await page.locator("main").inner_text()


async def _record_text(node: RunningNode, summary: dict[str, Any]) -> str:
    record = next(f for f in summary["files"] if f["kind"] == "record")
    return node.fed.blobs.path(record["sha256"]).read_text(encoding="utf-8")


def _people(record: str) -> str:
    return next(line for line in record.splitlines() if line.startswith("参与人员："))


async def test_a_meeting_through_the_pages_before_and_after_it_ends(
    regions: list[RunningNode],
) -> None:
    hengyang, shaoyang = regions
    shots = output_dir("test_a_meeting_through_the_pages_before_and_after_it_ends")
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        approver = await ApiClient(shaoyang.url, http).login("approver")
        case_no, code, handling_id, receiving_id = await accepted_case_with_code(clerk, approver)
        # A 云见面 with only the approver invited (the office form allows it).
        case = await schedule(
            approver,
            clerk,
            case_no,
            handling_id,
            receiving_id,
            kind="meeting",
            inspectors=["approver"],
        )
        invitation = f"/inspection/v1/cases/{receiving_id}/invitation"
        console = f"/inspection/{case.session_id}/console"
        join_url = case.schedule["join_url"]

        # The window is told who takes part by display name, not by login.
        at_window = await until(clerk, case_no, lambda c: c["status"] == "inspection")
        assert [p["name"] for p in at_window["details"]["inspection"]["participants"]] == [
            NAMES["approver"],
            APPLICANT["name"],
        ]

        # Programs keep their JSON answers.
        async with http.get(hengyang.url + invitation) as resp:
            assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
        inspector = await ApiClient(shaoyang.url, http).login("inspector")
        status, body = await inspector.call("GET", f"/inspection/v1/sessions/{case.session_id}")
        assert (status, body["error"]) == (403, "not_a_participant")

        async with chromium() as browser:
            # The window prints the invitation: a 云见面, and its QR code scans to the link.
            window = await _staff_page(browser, hengyang, "clerk")
            await window.goto(hengyang.url + invitation)
            shot = shots / "1-invitation-1280.png"
            await window.screenshot(path=str(shot), full_page=True)
            assert decode_qr(shot) == [join_url]
            text = await window.locator("main").inner_text()
            assert "云见面" in text and "现场" not in text and "勘验" not in text
            await window.goto(f"{hengyang.url}/window/cases/{receiving_id}")
            next_step = await window.locator(".next-step").inner_text()
            assert "云见面" in next_step and "勘验" not in next_step
            # The window's case page carries the session itself: when, who (by display name),
            # and the invitation to print for the applicant.
            section = await window.locator("#inspection").inner_text()
            assert "见面时间" in section and "勘验" not in section
            assert f"{NAMES['approver']}、{APPLICANT['name']}" in section
            assert await window.locator("#invitation").get_attribute("href") == invitation
            await window.screenshot(path=str(shots / "2-window-case-1280.png"), full_page=True)

            # Not signed in, a person is sent to the login form, not shown JSON.
            stranger = await _citizen_page(browser)
            await stranger.goto(hengyang.url + invitation)
            assert "/login?next=" in stranger.url

            # The citizen's /query page (390 px): a video meeting, with the link to join it.
            citizen = await _citizen_page(browser)
            text = await _query(citizen, hengyang, case_no, code)
            await citizen.screenshot(path=str(shots / "3-query-before-390.png"), full_page=True)
            section = await citizen.locator("#inspection").inner_text()
            assert "云见面" in section and "现场" not in section and "勘验" not in section
            assert await citizen.locator("#join-inspection").get_attribute("href") == join_url
            assert "勘验" not in await citizen.locator("#next-step").inner_text()
            assert await overflowing(citizen) == []

            # The join page on the phone: worded as a meeting; 办件查询 leads to the region
            # that holds the case (衡阳市's window), with its number.
            phone = await _citizen_page(browser)
            await phone.goto(join_url)
            await phone.screenshot(path=str(shots / "4-join-before-390.png"), full_page=True)
            text = await phone.locator("main").inner_text()
            assert "云见面" in text and "现场" not in text and "后置摄像头" not in text
            query_link = phone.get_by_role("link", name="办件查询")
            assert await query_link.get_attribute("href") == (
                f"{hengyang.url}/query?case={case_no}"
            )
            assert await overflowing(phone) == []

            # An inspector who was not invited gets a page in Chinese, not raw JSON.
            stray = await _staff_page(browser, shaoyang, "inspector")
            answer = await stray.goto(shaoyang.url + console)
            assert answer is not None and answer.status == 403
            assert "text/html" in answer.headers["content-type"]
            text = await stray.locator("main").inner_text()
            assert "您不是本次云见面的参与人员" in text and "\\u" not in text
            await stray.screenshot(path=str(shots / "5-console-stranger-1280.png"), full_page=True)

            # The approver takes part, and may end and sign the meeting's record.
            host = Client(
                http,
                ws_url(shaoyang, case.session_id),
                {"type": "join", "auth": approver.token},
                video=False,
            )
            try:
                assert (await host.open())["type"] == "joined"
            finally:
                await host.close()
            summary = await approver.ok(
                "POST",
                f"/inspection/v1/sessions/{case.session_id}/end",
                {"result": "pass", "record": "已视频核实申请人身份及经营意愿。"},
            )
            record = await _record_text(shaoyang, summary)
            assert (
                _people(record)
                == f"参与人员：工作人员 {NAMES['approver']}、申请人 {APPLICANT['name']}"
            )
            assert "勘验" not in record
            await until(
                clerk, case_no, lambda c: (c["details"].get("inspection") or {}).get("evidence")
            )

            # Over: nobody is told to join any more.
            text = await _query(citizen, hengyang, case_no, code)
            await citizen.screenshot(path=str(shots / "6-query-after-390.png"), full_page=True)
            section = await citizen.locator("#inspection").inner_text()
            assert "已结束" in section
            assert await citizen.locator("#join-inspection").count() == 0
            assert "届时" not in text and "打开下面的链接" not in text

            await window.goto(f"{hengyang.url}/window/cases/{receiving_id}")
            next_step = await window.locator(".next-step").inner_text()
            assert "已结束" in next_step and "中" not in next_step.replace("云见面", "")
            # ...and, once over, its conclusion and record, with no invitation left to print.
            section = await window.locator("#inspection").inner_text()
            assert "见面结论" in section and "已完成，情况属实" in section
            assert "云见面记录" in section and "勘验" not in section
            assert await window.locator("#invitation").count() == 0
            # The state and the timeline speak of a meeting too.
            assert await window.locator(".badge.status-inspection").inner_text() == "云见面中"
            timeline = await window.locator("ol.timeline").inner_text()
            assert "安排云见面" in timeline and "完成云见面" in timeline
            assert "勘验" not in timeline
            await window.screenshot(
                path=str(shots / "7-window-case-after-1280.png"), full_page=True
            )

            await window.goto(hengyang.url + invitation)
            await window.screenshot(path=str(shots / "8-invitation-after-1280.png"), full_page=True)
            assert await window.locator(".qr svg").count() == 0
            assert "已结束" in await window.locator("main").inner_text()

            await window.goto(f"{hengyang.url}/office/cases/{receiving_id}")
            office = await window.locator("#inspection").inner_text()
            await window.screenshot(path=str(shots / "9-office-after-1280.png"), full_page=True)
            assert "云见面" in office and "勘验结果" not in office and "合格" not in office
            assert await window.locator(".badge.status-inspection").inner_text() == "云见面中"
            assert "勘验" not in await window.locator("#timeline").inner_text()

            await phone.goto(join_url)
            assert "已结束" in await phone.locator("main").inner_text()
            assert await phone.get_by_role("button", name="开始").count() == 0

            host_page = await _staff_page(browser, shaoyang, "approver")
            await host_page.goto(shaoyang.url + console)
            await host_page.screenshot(
                path=str(shots / "10-console-after-1280.png"), full_page=True
            )
            assert "已结束" in await host_page.locator("main").inner_text()
            for button in ("结束并签署", "截图取证"):
                assert await host_page.get_by_role("button", name=button).count() == 0


async def test_an_inspection_record_names_its_people_and_is_signed_by_an_inspector(
    regions: list[RunningNode],
) -> None:
    hengyang, shaoyang = regions
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        approver = await ApiClient(shaoyang.url, http).login("approver")
        inspector = await ApiClient(shaoyang.url, http).login("inspector")
        case_no, _code, handling_id, receiving_id = await accepted_case_with_code(clerk, approver)
        case = await schedule(
            approver,
            clerk,
            case_no,
            handling_id,
            receiving_id,
            inspectors=["inspector", "approver"],
        )
        assert [p["name"] for p in case.schedule["participants"]] == [
            NAMES["inspector"],
            NAMES["approver"],
            APPLICANT["name"],
        ]
        url = ws_url(shaoyang, case.session_id)
        joined = [
            Client(http, url, {"type": "join", "auth": who.token}, video=False)
            for who in (inspector, approver)
        ]
        try:
            for client in joined:
                assert (await client.open())["type"] == "joined"
        finally:
            for client in joined:
                await client.close()
        base = f"/inspection/v1/sessions/{case.session_id}"
        # A site inspection stays signed by an inspector.
        status, body = await approver.call(
            "POST", f"{base}/end", {"result": "pass", "record": "现场符合要求。"}
        )
        assert (status, body["error"]) == (403, "not_a_participant")
        summary = await inspector.ok(
            "POST", f"{base}/end", {"result": "pass", "record": "现场符合要求。"}
        )
        record = await _record_text(shaoyang, summary)
        assert _people(record) == (
            f"参与人员：勘验人员 {NAMES['inspector']}、勘验人员 {NAMES['approver']}、"
            f"申请人 {APPLICANT['name']}"
        )
        keys = shaoyang.fed.identity.keyset()
        manifest = verify_manifest(
            shaoyang.fed.blobs.path(summary["manifest"]).read_bytes(),
            issuer="430523",
            keys=lambda kid: k.public_key if (k := keys.get(kid)) else None,
        )
        assert [(p["role"], p["name"]) for p in manifest["participants"]] == [
            ("inspector", NAMES["inspector"]),
            ("inspector", NAMES["approver"]),
            ("applicant", APPLICANT["name"]),
        ]
