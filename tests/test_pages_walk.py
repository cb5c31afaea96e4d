"""The whole 异地代收代办 walk in a real browser, through the pages only (issue #4): a clerk at
邵阳县 takes an application with uploads for a 衡阳市 item and prints the receipt; the approver
at 衡阳市 finds it in the inbox and requests a supplement; the clerk relays it; the approver
accepts and decides with a result PDF; the window hands the result over; the citizen looks the
case up by case number and query code on a phone and rates it. Each step is asserted on the
pages, and a screenshot of every page is saved under test-output/<test name>/."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from protocol.identifiers import resident_id_check_digit
from tests.support.api import pdf
from tests.support.browser import DESKTOP, PHONE, chromium, output_dir, sign_in
from tests.support.databases import DatabaseFactory
from tests.support.regions import start_regions
from tests.support.waiting import wait_until

ITEM = "430400-XK-0001"
ITEM_NAME = "建筑工程施工许可（分阶段办理）"
SUPPLEMENT_MATERIAL = "危险性较大的分部分项工程清单及安全管理措施"
DEFERRED_MATERIAL = "施工图设计文件审查合格书（或本阶段图纸审查意见）"
REQUIREMENT = "请补充基坑支护专项方案及专家论证意见"
ID_FIRST17 = "43052319900101123"
APPLICANT_ID = ID_FIRST17 + resident_id_check_digit(ID_FIRST17)


def _pdf_file(name: str, text: str | None = None) -> dict[str, Any]:
    return {"name": name, "mimeType": "application/pdf", "buffer": pdf(text or name)}


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.n = 0

    async def __call__(self, page: Page, name: str) -> None:
        self.n += 1
        await page.screenshot(path=self.folder / f"{self.n:02d}-{name}.png", full_page=True)


async def _reload_until(page: Page, url: str, check: Any) -> None:
    """Reload ``url`` until ``check(page)`` holds: messages between the nodes are asynchronous."""

    async def ready() -> bool:
        await page.goto(url)
        return bool(await check(page))

    await wait_until(ready, timeout=60, interval=0.5)


async def test_proxy_case_walked_through_every_page(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    shaoyang, hengyang = await start_regions(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")]
    )
    shot = Shots(output_dir("test_proxy_case_walked_through_every_page"))
    try:
        async with chromium() as browser:
            # -- 邵阳县 window: the clerk takes the application ------------------------------
            clerk = await (await browser.new_context(viewport=DESKTOP)).new_page()
            clerk.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await sign_in(clerk, shaoyang.url, "clerk")
            await clerk.get_by_label("事项名称或编码").fill(ITEM)
            await clerk.get_by_role("button", name="查询事项").click()
            await clerk.wait_for_url(re.compile(r"/window\?q="))
            await shot(clerk, "clerk-chooser")
            await clerk.get_by_role("link", name=ITEM_NAME).click()
            await clerk.wait_for_url(f"{shaoyang.url}/window/items/{ITEM}")
            # 一次告知: the whole material list at once.
            await expect(clerk.locator("table.materials tbody tr")).to_have_count(7)

            await clerk.get_by_label("申请人姓名或单位名称").fill("张伟")
            await clerk.get_by_label("证件号码").fill(APPLICANT_ID)
            await clerk.get_by_label("联系电话").fill("13807340001")
            await clerk.get_by_label("项目名称").fill("邵阳县某某安置小区二期")
            await clerk.get_by_label("投资项目统一代码").fill("2026-430523-47-01-000001")
            await clerk.get_by_label("申请施工阶段").select_option("土方开挖与基坑支护")
            await clerk.get_by_label("建筑面积（平方米）").fill("12800")
            await clerk.get_by_label("合同价格（万元）").fill("3600")
            await clerk.get_by_label("施工单位").fill("湖南某建设集团有限公司")
            await clerk.get_by_label("计划开工日期").fill("2026-12-15")
            await clerk.get_by_label("批量上传扫描件").set_input_files(
                [_pdf_file(n) for n in ("M01-申请表.pdf", "M02.pdf", "M03.pdf", "M06.pdf")]
            )
            await clerk.get_by_label("容缺（签署承诺书，限期补齐）").check()
            await clerk.get_by_label("告知承诺（以承诺书代替）").check()
            await expect(clerk.locator("ul.uploads li.upload")).to_have_count(4)
            for code in ("M01", "M02", "M03", "M06"):
                await expect(
                    clerk.locator(f'li.material[data-code="{code}"] [data-state]')
                ).to_contain_text("已上传")
            await clerk.get_by_label("窗口领取").check()
            await clerk.get_by_label("已核验申请人身份证件原件").check()
            await shot(clerk, "clerk-application")
            await clerk.get_by_role("button", name="提交收件并打印凭证").click()
            await clerk.wait_for_url(re.compile(r"/window/receipt/\d+$"))

            slip = clerk.locator("article.slip")
            case_no = (await slip.locator("[data-case-no]").inner_text()).strip()
            code = (await slip.locator("[data-query-code]").inner_text()).strip()
            assert re.fullmatch(r"430523-\d{8}-\d{5}", case_no), case_no
            assert re.fullmatch(r"\d{6}", code)
            await expect(slip.locator("figure.qr-box svg")).to_have_count(1)
            await expect(slip.locator("[data-promised]")).to_contain_text("承诺办结时限")
            await expect(slip).to_contain_text(ITEM_NAME)
            await shot(clerk, "clerk-receipt")

            # -- 衡阳市 back office: the approver finds it and asks for a supplement ----------
            approver = await (await browser.new_context(viewport=DESKTOP)).new_page()
            approver.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await sign_in(approver, hengyang.url, "approver")
            await _reload_until(
                approver,
                f"{hengyang.url}/office",
                lambda p: p.locator(f"tr[data-case-no='{case_no}']").count(),
            )
            await shot(approver, "approver-inbox")
            await approver.get_by_label("受理编号或申请人").fill(case_no)
            async with approver.expect_navigation():
                await approver.get_by_role("button", name="查询").click()
            row = approver.locator("tr.case-row")
            await expect(row).to_have_count(1)
            await expect(row).to_contain_text("已转交")
            assert APPLICANT_ID not in await row.inner_text()
            async with approver.expect_navigation():
                await approver.get_by_role("link", name=case_no).click()
            case_url = approver.url
            await expect(approver.locator("#facts")).to_contain_text("张伟")
            await expect(approver.locator("#materials details[data-pdf]")).not_to_have_count(0)
            await shot(approver, "approver-case")

            notice = approver.locator("#action-request_supplement")
            await notice.get_by_label("对应材料").select_option("M06")
            await notice.get_by_label("补正要求").fill(REQUIREMENT)
            async with approver.expect_navigation():
                await notice.get_by_role("button", name="发送补正通知").click()
            await expect(approver.locator("#case-status")).to_contain_text("补正中")
            await expect(approver.locator("#supplement-notice")).to_contain_text(REQUIREMENT)
            await shot(approver, "approver-supplement-requested")

            # -- 邵阳县 window: the clerk relays the supplement -------------------------------
            await _reload_until(
                clerk,
                f"{shaoyang.url}/window/cases",
                lambda p: (
                    p.locator("li.case-row", has_text=case_no).filter(has_text="补正中").count()
                ),
            )
            await shot(clerk, "clerk-cases-supplement")
            async with clerk.expect_navigation():
                await (
                    clerk.locator("li.case-row", has_text=case_no)
                    .get_by_role("link", name=case_no)
                    .click()
                )
            await expect(clerk.locator("body")).to_contain_text(REQUIREMENT)
            await clerk.get_by_label(f"上传补正材料「{SUPPLEMENT_MATERIAL}」").set_input_files(
                _pdf_file("基坑支护专项方案.pdf")
            )
            await expect(clerk.locator("body")).to_contain_text("已上传：基坑支护专项方案.pdf")
            await shot(clerk, "clerk-supplement")
            await clerk.get_by_role("button", name="提交补正材料").click()
            await expect(clerk.locator("h1 + .badge")).to_have_text("已转交")

            # -- 衡阳市: accept, then decide with the result PDF uploaded on the page ---------
            await _reload_until(
                approver,
                case_url,
                lambda p: p.locator("#action-accept").count(),
            )
            await expect(approver.locator("#supplement-notice")).to_contain_text("已于")
            accept = approver.locator("#action-accept")
            await accept.get_by_label("受理意见（可选）").fill("材料齐全，予以受理")
            async with approver.expect_navigation():
                await accept.get_by_role("button", name="受理").click()
            await expect(approver.locator("#case-status")).to_contain_text("已受理")
            promised = (await approver.locator("#promised-date").inner_text()).strip()
            assert re.match(r"\d{4}年\d{1,2}月\d{1,2}日", promised), promised
            await shot(approver, "approver-accepted")

            decide = approver.locator("#action-decide")
            await decide.get_by_label("结果文书（PDF）").set_input_files(
                _pdf_file("施工许可证.pdf", "施工许可证 430400202611270009")
            )
            await decide.get_by_text("已上传「施工许可证.pdf」").wait_for()
            await decide.get_by_label("文书名称").fill("建筑工程施工许可证")
            await decide.get_by_label("证照编号（可选）").fill("430400202611270009")
            async with approver.expect_navigation():
                await decide.get_by_role("button", name="提交办结决定").click()
            await expect(approver.locator("#case-status")).to_contain_text("办结（准予）")
            await expect(approver.locator("#decision")).to_contain_text("建筑工程施工许可证")
            await shot(approver, "approver-decided")

            # -- 邵阳县 window: the result is handed over at the window ---------------------
            case_page = f"{shaoyang.url}/window/cases"
            await _reload_until(
                clerk,
                case_page,
                lambda p: (
                    p.locator("li.case-row", has_text=case_no).filter(has_text="办结").count()
                ),
            )
            async with clerk.expect_navigation():
                await (
                    clerk.locator("li.case-row", has_text=case_no)
                    .get_by_role("link", name=case_no)
                    .click()
                )
            # A 容缺 material must be caught up before the result is handed over.
            await expect(clerk.locator("#dispatch-blocked")).to_contain_text("容缺材料补齐后")
            await shot(clerk, "clerk-result-arrived")
            await clerk.get_by_label(f"补齐「{DEFERRED_MATERIAL}」").set_input_files(
                _pdf_file("施工图审查合格书.pdf")
            )
            await expect(clerk.locator("body")).to_contain_text("已上传：施工图审查合格书.pdf")
            await clerk.get_by_role("button", name="提交容缺补齐材料").click()
            await expect(clerk.locator("#dispatch-blocked")).to_have_count(0)
            await shot(clerk, "clerk-caught-up")
            await clerk.get_by_label("窗口领取").check()
            await clerk.get_by_role("button", name="确认出件").click()
            await expect(clerk.locator("h1 + .badge")).to_have_text("已出件")
            await clerk.get_by_role("button", name="确认已送达").click()
            await expect(clerk.locator("h1 + .badge")).to_have_text("已送达")
            await shot(clerk, "clerk-delivered")

            # -- the citizen, on a phone: look the case up and rate it ---------------------
            citizen = await (await browser.new_context(viewport=PHONE)).new_page()
            await citizen.goto(f"{shaoyang.url}/query?case={case_no}")
            await expect(citizen.get_by_label("受理编号")).to_have_value(case_no)
            await shot(citizen, "citizen-query")
            await citizen.get_by_label("查询码").fill(code)
            await citizen.get_by_role("button", name="查询").click()
            await expect(citizen.locator("#case-status")).to_have_text("已送达")
            timeline = citizen.locator("#timeline")
            for words in ("补正", "受理", "办结", "送达"):
                await expect(timeline).to_contain_text(words)
            promised_day = re.match(r"\d{4}年\d{1,2}月\d{1,2}日", promised)
            assert promised_day is not None
            await expect(citizen.locator("body")).to_contain_text(promised_day.group(0))
            await expect(citizen.locator("#decision")).to_contain_text("准予")
            # What the citizen sees never shows the ID number or the code in the address bar.
            assert APPLICANT_ID not in await citizen.content()
            assert code not in citizen.url
            await shot(citizen, "citizen-case")

            await citizen.get_by_label("非常满意").check()
            await citizen.get_by_label("评价意见").fill("异地办理很方便，不用跑衡阳")
            await citizen.get_by_role("button", name="提交评价").click()
            await expect(citizen.locator("#rating-thanks")).to_be_visible()
            await expect(citizen.locator("#ratings")).to_contain_text("非常满意")
            await expect(citizen.locator("#ratings")).to_contain_text("异地办理很方便")
            await shot(citizen, "citizen-rated")

            # The rating reached the handling region's case page too.
            await _reload_until(
                approver,
                case_url,
                lambda p: p.get_by_text("异地办理很方便，不用跑衡阳").count(),
            )
            await shot(approver, "approver-sees-rating")
    finally:
        await shaoyang.stop()
        await hengyang.stop()
