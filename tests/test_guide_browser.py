"""The 办事指南 in Chromium as a citizen's phone (390 px) sees it, and the hall's QR sheet as it
prints on A4: search, open an item, the bytes a first visit transfers, no sideways scrolling,
and every printed QR code read back with zxing-cpp to its own item's guide page. Screenshots go
to test-output/test_guide_on_a_phone_and_on_paper/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, Request

from node.catalog.loading import load_catalog, parse_catalog
from tests.support.browser import chromium, output_dir, overflowing
from tests.support.databases import DatabaseFactory
from tests.support.guide import HALL, refresh, start_with_hall
from tests.support.nodes import RunningNode
from tests.support.qr import decode_qr

PHONE = {"width": 390, "height": 844}
#: An A4 sheet's printable width at 96 CSS px per inch: 210 mm less the 12 mm margins.
A4_CONTENT = {"width": round((210 - 2 * 12) / 25.4 * 96), "height": 1000}
#: A citizen's first load of a page, everything it fetches included.
MAX_FIRST_LOAD = 200 * 1024
DEMO = Path(__file__).resolve().parents[1] / "node" / "demo_catalog" / "430400.toml"


@pytest.fixture
async def regions(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    nodes = await start_with_hall(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")], {"430523": HALL}
    )
    yield nodes
    for node in nodes:
        await node.stop()


class Transferred:
    """What a page's requests transferred (headers and bodies, as received)."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []

        def finished(request: Request) -> None:
            self.requests.append(request)

        page.on("requestfinished", finished)

    async def total(self) -> int:
        total = 0
        for request in self.requests:
            sizes = await request.sizes()
            total += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        return total


async def _no_sideways_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], (page.url, widths)
    assert await overflowing(page) == [], page.url


async def _first_load(context: BrowserContext, url: str) -> tuple[Page, int]:
    page = await context.new_page()
    seen = Transferred(page)
    response = await page.goto(url)
    assert response is not None and response.status == 200, url
    await page.wait_for_load_state("networkidle")
    return page, await seen.total()


async def test_guide_on_a_phone_and_on_paper(regions: list[RunningNode]) -> None:
    shaoyang, hengyang = regions
    shots = output_dir("test_guide_on_a_phone_and_on_paper")
    # 衡阳市 publishes its demo catalogue and nine more items: fourteen codes, two A4 sheets.
    demo = parse_catalog("430400", DEMO.read_text(encoding="utf-8"))
    template = next(i for i in demo if i.code == "430400-XK-0002")
    extra = [
        replace(template, code=f"430400-QT-{n:04d}", name=f"跨域通办测试事项（第{n}号）")
        for n in range(1, 10)
    ]
    await load_catalog(hengyang.db, "430400", [*demo, *extra])
    await refresh(shaoyang, hengyang)
    codes = sorted(i.code for i in [*demo, *extra])

    async with chromium() as browser:
        phone = await browser.new_context(
            viewport=PHONE, is_mobile=True, has_touch=True, locale="zh-CN"
        )
        # The citizen's query page leads to the guide.
        page = await phone.new_page()
        await page.goto(f"{shaoyang.url}/query")
        await page.locator("#guide-link").click()
        await page.wait_for_url(f"{shaoyang.url}/guide")
        await page.close()

        page, size = await _first_load(phone, f"{shaoyang.url}/guide")
        assert 0 < size < MAX_FIRST_LOAD, size
        await page.screenshot(path=shots / "1-guide-390.png", full_page=True)
        await _no_sideways_scroll(page)

        # Search as a person does: a keyword that is not in the name, one region.
        await page.get_by_label("事项名称或关键词").fill("卫生证")
        await page.get_by_label("办理地").select_option("430400")
        await page.get_by_role("button", name="搜索").click()
        await page.wait_for_url(re.compile(r"/guide\?q="))
        results = page.locator("a.guide-name")
        assert await results.all_inner_texts() == [
            *(f"跨域通办测试事项（第{n}号）" for n in range(1, 10)),  # QT codes come first
            "公共场所卫生许可（新办）",
        ]
        await page.screenshot(path=shots / "2-search-390.png", full_page=True)
        await _no_sideways_scroll(page)
        await results.first.click()
        await page.wait_for_url(f"{shaoyang.url}/guide/430400/430400-QT-0001")
        await page.go_back()
        await page.get_by_label("事项名称或关键词").fill("公共场所卫生许可（新办）")
        await page.get_by_role("button", name="搜索").click()
        await page.wait_for_url(re.compile(r"/guide\?q="))
        await page.locator("a.guide-name").first.click()
        await page.wait_for_url(f"{shaoyang.url}/guide/430400/430400-XK-0002")
        assert await page.locator("h1").inner_text() == "公共场所卫生许可（新办）"
        assert "邵阳县塘渡口镇政务服务中心一楼" in await page.locator("#channels").inner_text()
        await page.screenshot(path=shots / "3-item-390.png", full_page=True)
        await _no_sideways_scroll(page)
        await phone.close()

        # A first visit to an item page (nothing cached) transfers less than 200 KB.
        fresh = await browser.new_context(
            viewport=PHONE, is_mobile=True, has_touch=True, locale="zh-CN"
        )
        page, size = await _first_load(fresh, f"{shaoyang.url}/guide/430400/430400-XK-0002")
        assert 0 < size < MAX_FIRST_LOAD, size
        print(f"first load of an item page at 390 px: {size} bytes")
        await _no_sideways_scroll(page)
        # The QR sheet on a phone screen fits too.
        page, _size = await _first_load(fresh, f"{shaoyang.url}/guide/qr-sheet?region=430400")
        await _no_sideways_scroll(page)
        await fresh.close()

        # The narrowest phones the guide serves (360 px): every guide page still fits.
        narrow = await browser.new_context(
            viewport={"width": 360, "height": 740}, is_mobile=True, locale="zh-CN"
        )
        page = await narrow.new_page()
        for path in (
            "/guide",
            "/guide?q=许可&region=430400",
            "/guide/430400/430400-XK-0001",
            "/guide/430523/430523-XK-0002",
            "/guide/qr-sheet?region=430400",
            "/guide/430400/430400-XK-9999",
        ):
            await page.goto(shaoyang.url + path)
            await _no_sideways_scroll(page)
        await narrow.close()

        # The printed guide of an item: A4, the QR code of its page on it.
        paper = await browser.new_context(viewport=A4_CONTENT, device_scale_factor=2)
        page = await paper.new_page()
        await page.emulate_media(media="print")
        await page.goto(f"{shaoyang.url}/guide/430400/430400-XK-0002")
        await page.screenshot(path=shots / "4-item-print-a4.png", full_page=True)
        assert decode_qr(shots / "4-item-print-a4.png") == [
            f"{shaoyang.url}/guide/430400/430400-XK-0002"
        ]
        assert 1 <= _pdf_pages(await page.pdf(prefer_css_page_size=True)) <= 3

        # The hall's QR sheet as printed: A4, three codes a row, four rows a sheet.
        await page.goto(f"{shaoyang.url}/guide/qr-sheet?region=430400")
        sheet = shots / "5-qr-sheet-a4.png"
        await page.screenshot(path=sheet, full_page=True)
        expected = {code: f"{shaoyang.url}/guide/430400/{code}" for code in codes}
        assert sorted(decode_qr(sheet)) == sorted(expected.values())
        cells = page.locator("li.qr-cell")
        assert await cells.count() == len(codes)
        tops = [(await cells.nth(i).bounding_box() or {"y": -1})["y"] for i in range(3)]
        assert len(set(tops)) == 1, tops  # the first three side by side
        # Each code, cut out with its caption, reads as its own item's page.
        for index in range(len(codes)):
            one = cells.nth(index)
            code = await one.locator(".qr-code-text").inner_text()
            name = await one.locator(".qr-name").inner_text()
            shot = shots / f"6-cell-{code}.png"
            await one.screenshot(path=shot)
            assert decode_qr(shot) == [expected[code]], (code, name)
        pdf = await page.pdf(prefer_css_page_size=True)
        assert _pdf_pages(pdf) == 2  # fourteen codes, twelve a sheet
        await paper.close()


def _pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))
