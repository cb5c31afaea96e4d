"""监督 in a real browser: counts per partner, an overdue case, an open 差评 rectification,
the partner link's health (with a dead letter) and the chart; a clerk may not look."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import aiohttp

from node.appkeys import CASES
from node.clock import today_in_china
from node.federation.models import outbox
from node.identity.devprovider import DevProvider, Person, serve
from node.workdays.service import load_calendar
from tests.support.api import ApiClient
from tests.support.browser import DESKTOP, PHONE, chromium, output_dir, overflowing, sign_in
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.identity import CLIENT_ID, identity_toml
from tests.support.nodes import free_port
from tests.support.regions import materials_for, start_regions
from tests.support.waiting import wait_until
from tests.test_pages_office import ITEM, PERSON, find, submit_at_window, until_status


async def test_supervisor_sees_counts_overdue_rectifications_and_link_health(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    port = free_port()
    idp = await serve(DevProvider(issuer=f"http://127.0.0.1:{port}"), "127.0.0.1", port)
    shaoyang, hengyang = await start_regions(
        tmp_path,
        databases,
        [("430523", "邵阳县"), ("430400", "衡阳市")],
        extra_toml=identity_toml(idp.provider.issuer),
    )
    shots = output_dir("test_supervisor_sees_counts_overdue_rectifications_and_link_health")
    try:
        async with aiohttp.ClientSession() as http:
            clerk = await ApiClient(shaoyang.url, http).login("clerk")
            approver = await ApiClient(hengyang.url, http).login("approver")
            supervisor = await ApiClient(hengyang.url, http).login("supervisor")

            # Two proxy cases from 邵阳县: one accepted (then rated 1: a 差评), one waiting.
            rated_no = await submit_at_window(clerk)
            waiting_no = await submit_at_window(clerk)
            incoming = await until_status(approver, rated_no, "forwarded")
            await until_status(approver, waiting_no, "forwarded")
            await approver.act(incoming["id"], "accept")
            at_window = await until_status(clerk, rated_no, "accepted")
            await clerk.act(
                at_window["id"],
                "rate",
                {"level": 1, "stage": "accept", "channel": 1, "comment": "窗口排队太久"},
            )

            # 全程网办 on 衡阳市 itself, accepted 30 days ago (the service's clock): overdue.
            citizen = ApiClient(hengyang.url, http)
            citizen.token = idp.provider.issue(
                Person(PERSON["name"], PERSON["id_number"]), CLIENT_ID
            )
            item = await citizen.ok("GET", f"/api/v1/catalog/{ITEM}")
            online = await citizen.ok(
                "POST",
                "/api/v1/public/applications",
                {
                    "item_code": ITEM,
                    "applicant": PERSON,
                    "form": form_for(item, project_name="刘洋自建房"),
                    "materials": await materials_for(citizen, item, public=True),
                    "delivery": {"method": "window", "address": None},
                },
                status=201,
            )
            service = hengyang.app[CASES]  # type: ignore[index]
            service.clock = lambda: time.time() - 30 * 86400
            try:
                late = await approver.act(online["case"]["id"], "accept")
            finally:
                service.clock = time.time
            overdue_no = late["case_no"]
            assert (await find(supervisor, overdue_no))["time_status"] == "overdue"  # type: ignore[index]

            async def rectification_open() -> bool:
                board = await supervisor.ok("GET", "/api/v1/supervision")
                return any(r["case_no"] == rated_no for r in board["open_rectifications"])

            await wait_until(rectification_open)
            # At the window's region the 差评 is followed up, not listed as its own to rectify.
            window_supervisor = await ApiClient(shaoyang.url, http).login("supervisor")
            board = await window_supervisor.ok("GET", "/api/v1/supervision")
            assert [r["case_no"] for r in board["awaiting_rectification"]] == [rated_no]
            assert board["open_rectifications"] == []

        # A dead letter: 邵阳县 refused an envelope for good.
        now = time.time()
        async with hengyang.db.write() as conn:
            await conn.execute(
                outbox.insert().values(
                    partner="430523",
                    jti=str(uuid.uuid4()),
                    xt="XT-test-dead-letter",
                    seq=1,
                    typ="case.progress",
                    token="x",
                    digest="0" * 64,
                    blobs="",
                    created_at=now - 120,
                    expires_at=now + 86400,
                    next_attempt_at=now + 86400,
                    attempts=1,
                    last_status=400,
                    last_error="unknown_case: no case with this xt",
                    dead_at=now - 60,
                )
            )
        calendar_missing = (await load_calendar(hengyang.db)).missing_next_year(today_in_china())

        async with chromium() as browser:
            page = await browser.new_page(viewport=DESKTOP)
            await sign_in(page, hengyang.url, "supervisor")
            assert page.url == f"{hengyang.url}/supervision"
            await page.screenshot(path=shots / "01-supervision.png", full_page=True)

            # Counts by state per partner.
            shaoyang_row = page.locator("#status-counts tr[data-region='430523']")
            assert await shaoyang_row.locator("td[data-status='forwarded']").inner_text() == "1"
            assert await shaoyang_row.locator("td[data-status='accepted']").inner_text() == "1"
            assert await shaoyang_row.locator("td[data-status='total']").inner_text() == "2"
            assert "邵阳县" in await shaoyang_row.inner_text()
            own_row = page.locator("#time-counts tr[data-region='430400']")
            assert await own_row.locator("td[data-time='overdue']").inner_text() == "1"

            # The overdue list links to the case.
            overdue = page.locator(f"#overdue-list tr[data-case-no='{overdue_no}']")
            assert await overdue.count() == 1
            assert "超期" in await overdue.inner_text()
            assert await page.locator(f"#overdue-list tr[data-case-no='{rated_no}']").count() == 0

            # The open 差评 rectification with its deadline.
            rectification = page.locator(f"#rectifications tr[data-case-no='{rated_no}']")
            text = await rectification.inner_text()
            assert "1 级" in text and "窗口排队太久" in text and "年" in text

            # 好差评 figures: one rating, a 差评, not yet rectified; by partner and by item.
            total = page.locator("#rating-months tr[data-month='total']")
            assert await total.locator("td[data-figure='ratings']").inner_text() == "1"
            assert await total.locator("td[data-figure='good_rate']").inner_text() == "0.0%"
            assert await total.locator("td[data-figure='bad']").inner_text() == "1"
            assert await total.locator("td[data-figure='rectified_rate']").inner_text() == "0.0%"
            by_partner = page.locator("#rating-partners tr[data-region='430523']")
            assert "邵阳县" in await by_partner.inner_text()
            assert await page.locator(f"#rating-items tr[data-item='{ITEM}']").count() == 1

            # Partner link health: delivered to 邵阳县, nothing waiting, one dead letter.
            link = page.locator("#link-health tr[data-region='430523']")
            assert "邵阳县" in await link.inner_text()
            assert await link.locator("td[data-col='last-delivered']").inner_text() != "尚无"
            assert await link.locator("td[data-col='depth']").inner_text() == "0"
            assert await link.locator("td[data-col='dead']").inner_text() == "1 / 1"
            assert "unknown_case" in await link.locator("td[data-col='error']").inner_text()
            assert "异常" in await link.inner_text()
            assert await link.locator("td[data-col='last-received']").inner_text() != "尚无"

            # The chart, with its text alternative.
            chart = page.locator("svg#time-chart")
            assert await chart.get_attribute("role") == "img"
            assert await chart.locator("rect.segment").count() >= 2
            desc = await chart.locator("desc").text_content()
            assert desc is not None and "超期 1 件" in desc and "邵阳县" in desc

            warning = page.locator("#calendar-warning")
            assert await warning.count() == (1 if calendar_missing else 0)

            await page.set_viewport_size(PHONE)
            await page.screenshot(path=shots / "02-supervision-phone.png", full_page=True)
            assert await overflowing(page) == []

            # From the overdue list to the case page.
            await page.set_viewport_size(DESKTOP)
            async with page.expect_navigation():
                await overdue.get_by_role("link", name=overdue_no).click()
            assert "超期" in await page.locator("#case-status").inner_text()
            await page.screenshot(path=shots / "03-overdue-case.png", full_page=True)

            # 差评整改 from the list: the supervisor records the rectification and follow-up.
            await page.goto(f"{hengyang.url}/supervision")
            async with page.expect_navigation():
                await rectification.get_by_role("link", name=rated_no).click()
            assert "待整改" in await page.locator("#ratings").inner_text()
            form = page.locator("form[id^='action-rectify']")
            await form.get_by_label("整改情况").fill("已增设潮汐窗口，高峰期加派人员")
            await form.get_by_label("回访结果（可选）").fill("申请人表示认可")
            await form.get_by_label("回访时申请人表示满意").check()
            await page.screenshot(path=shots / "04-rectify-form.png", full_page=True)
            async with page.expect_navigation():
                await form.get_by_role("button", name="提交整改").click()
            ratings = await page.locator("#ratings").inner_text()
            assert "已整改" in ratings and "申请人表示认可（满意）" in ratings
            assert "差评整改" in await page.locator("#timeline li").first.inner_text()
            await page.goto(f"{hengyang.url}/supervision")
            assert await page.locator("#rectifications-empty").count() == 1
            total = page.locator("#rating-months tr[data-month='total']")
            assert await total.locator("td[data-figure='rectified_rate']").inner_text() == "100.0%"
            assert await total.locator("td[data-figure='on_time_rate']").inner_text() == "100.0%"
            await page.screenshot(path=shots / "05-rectified.png", full_page=True)

        # The rectification reaches 邵阳县.
        async with aiohttp.ClientSession() as http:
            clerk = await ApiClient(shaoyang.url, http).login("clerk")

            async def rectified_at_window() -> bool:
                case = await find(clerk, rated_no)
                return case is not None and case["events"][-1]["action"] == "rectify"

            await wait_until(rectified_at_window)
    finally:
        for node in (shaoyang, hengyang):
            await node.stop()
        await idp.stop()


async def test_a_clerk_may_not_open_supervision(tmp_path: Path, databases: DatabaseFactory) -> None:
    (hengyang,) = await start_regions(tmp_path, databases, [("430400", "衡阳市")])
    shots = output_dir("test_a_clerk_may_not_open_supervision")
    try:
        async with chromium() as browser:
            page = await browser.new_page(viewport=DESKTOP)
            await sign_in(page, hengyang.url, "clerk")
            answer = await page.goto(f"{hengyang.url}/supervision")
            assert answer is not None and answer.status == 403
            assert "无权访问" in await page.locator("h1").inner_text()
            await page.screenshot(path=shots / "01-clerk-forbidden.png", full_page=True)
            # The clerk may read the office inbox.
            answer = await page.goto(f"{hengyang.url}/office")
            assert answer is not None and answer.status == 200
            await page.screenshot(path=shots / "02-clerk-office.png", full_page=True)
            assert "暂无办件" in await page.locator("main").inner_text()
            for missing in ("999999", "abc"):
                answer = await page.goto(f"{hengyang.url}/office/cases/{missing}")
                assert answer is not None and answer.status == 404
                assert "办件不存在" in await page.locator("main").inner_text()
            await page.screenshot(path=shots / "03-no-such-case.png", full_page=True)
            # Not signed in: the login form, then back.
            await page.context.clear_cookies()
            await page.goto(f"{hengyang.url}/supervision")
            assert "/login?next=" in page.url and page.url.endswith("supervision")
    finally:
        await hengyang.stop()
