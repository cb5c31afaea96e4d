"""The window's item chooser (/window) over HTTP: it renders one page of the catalogue index
(node/catalog/search.py) from a plain GET form, follows the index when a partner's catalogue
changes, and refuses bad filters with a message."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.catalog import search as search_module
from node.catalog.loading import SAMPLES_DIR, parse_catalog
from node.catalog.partner_cache import store_partner_catalog
from node.pages.paging import Paged, nav
from protocol.catalog import Catalog, sign_catalog
from protocol.keys import generate_private_key
from tests.support.api import PASSWORD
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode
from tests.support.regions import start_regions

REGIONS = [("430523", "邵阳县"), ("430400", "衡阳市")]


@pytest.fixture
async def nodes(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    started = await start_regions(tmp_path, databases, REGIONS)
    yield started
    for node in started:
        await node.stop()


async def signed_in(http: aiohttp.ClientSession, node: RunningNode, username: str) -> None:
    async with http.get(f"{node.url}/login") as r:
        token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert token is not None
    form = {"username": username, "password": PASSWORD, "next": "", "csrf": token.group(1)}
    async with http.post(f"{node.url}/login", data=form, allow_redirects=False) as r:
        assert r.status in (302, 303)


async def chooser(http: aiohttp.ClientSession, node: RunningNode, query: str) -> tuple[int, str]:
    async with http.get(f"{node.url}/window?{query}") as r:
        return r.status, await r.text()


def listed(page: str) -> list[str]:
    return re.findall(r'<li class="item-row" data-code="([^"]+)">', page)


async def test_chooser_renders_ranked_pages_of_the_index(nodes: list[RunningNode]) -> None:
    shaoyang, _hengyang = nodes
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await signed_in(http, shaoyang, "clerk")
        status, page = await chooser(http, shaoyang, "")
        assert status == 200
        # Ours first, then the partner's, each under its region.
        assert listed(page)[:2] == ["430523-XK-0001", "430523-XK-0002"]
        assert "邵阳县（430523）" in page and "衡阳市（430400）" in page
        assert "共 5 个事项" in page and 'id="chooser-pager"' not in page

        status, page = await chooser(http, shaoyang, "q=%E5%8D%AB%E7%94%9F")  # 卫生
        assert status == 200 and listed(page) == ["430400-XK-0002"]
        assert "需云端勘验" in page and "承诺 5 个工作日（法定 20）" in page

        status, page = await chooser(http, shaoyang, "q=430400-xk-0001&mode=proxy")
        assert listed(page)[0] == "430400-XK-0001"
        status, page = await chooser(http, shaoyang, "region=%E8%A1%A1%E9%98%B3")  # 衡阳
        assert sorted(listed(page)) == ["430400-DJ-0001", "430400-XK-0001", "430400-XK-0002"]
        status, page = await chooser(http, shaoyang, "province=37")
        assert listed(page) == [] and "没有找到符合条件的事项" in page

        status, page = await chooser(http, shaoyang, "q=%E8%AE%B8%E5%8F%AF&page=1")  # 许可
        assert status == 200 and len(listed(page)) == 4

        # Bad filters: a message and status 400, nothing searched with them.
        for query in ("mode=fax", "province=99", "page=abc"):
            status, page = await chooser(http, shaoyang, query)
            assert status == 400 and 'id="search-problem"' in page, query


async def test_chooser_pages_with_links_and_caps(
    nodes: list[RunningNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    shaoyang, _hengyang = nodes
    monkeypatch.setattr("node.pages.window.PAGE_SIZE", 2)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await signed_in(http, shaoyang, "clerk")
        status, first = await chooser(http, shaoyang, "q=%E8%AE%B8%E5%8F%AF")  # 许可
        assert status == 200 and 'id="chooser-pager"' in first
        assert 'href="?q=%E8%AE%B8%E5%8F%AF&amp;page=2"' in first
        status, second = await chooser(http, shaoyang, "q=%E8%AE%B8%E5%8F%AF&page=2")
        assert len(listed(first)) == len(listed(second)) == 2
        assert not set(listed(first)) & set(listed(second))
        monkeypatch.setattr(search_module, "MAX_RESULTS", 3)
        status, capped = await chooser(http, shaoyang, "")
        assert "超过 3 个" in capped


async def test_chooser_follows_a_partner_catalogue_change(nodes: list[RunningNode]) -> None:
    shaoyang, _hengyang = nodes
    items = parse_catalog("430400", (SAMPLES_DIR / "430400.toml").read_text(encoding="utf-8"))
    renamed = dataclasses.replace(items[1], name="公共场所卫生许可（延续）")
    moment = time.time() + 5
    token = sign_catalog("430400", [renamed], moment, generate_private_key(), "430400:x")
    await store_partner_catalog(
        shaoyang.db,
        token.encode("ascii"),
        Catalog("430400", int(moment), (renamed,), "430400:x"),
        moment,
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await signed_in(http, shaoyang, "clerk")
        _status, page = await chooser(http, shaoyang, "region=430400")
        assert listed(page) == ["430400-XK-0002"] and "（延续）" in page
        assert "衡阳市（430400）" in page  # the name the index kept


def checked_and_offered(page: str) -> tuple[list[str], list[str]]:
    boxes = re.findall(r'<input type="checkbox" name="items" value="([^"]+)"( checked)?>', page)
    return [c for c, on in boxes if on], [c for c, on in boxes if not on]


async def test_bundle_page_searches_joint_items_and_keeps_the_chosen(
    tmp_path: Path, databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """多地联办 at national size: candidates are a searched page of the index (joint items
    only); the items chosen so far travel in the query, through searches and pages."""
    started = await start_regions(tmp_path, databases, [*REGIONS, ("370500", "东营市")])
    shaoyang = started[0]
    land, company = "430400-DJ-0001", "370500-DJ-0001"

    async def bundle(http: aiohttp.ClientSession, query: str) -> tuple[int, str]:
        async with http.get(f"{shaoyang.url}/window/bundle?{query}") as r:
            return r.status, await r.text()

    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await signed_in(http, shaoyang, "clerk")
            status, page = await bundle(http, "")
            assert status == 200
            assert checked_and_offered(page) == ([], [company, land])  # joint items only

            # Chosen one, then searched for the other: the first stays chosen, not offered.
            status, page = await bundle(http, f"items={land}&q=%E4%BC%81%E4%B8%9A")  # 企业
            assert checked_and_offered(page) == ([land], [company])
            assert 'id="apply"' not in page

            status, page = await bundle(http, f"items={land}&items={company}&go=1")
            assert status == 200 and 'id="apply"' in page
            assert re.findall(r'name="p\d\.item_code" value="([^"]+)"', page) == [land, company]

            # A non-joint or unknown code is dropped; one item left is not a bundle.
            status, page = await bundle(http, f"items={land}&items=430400-XK-0001&go=1")
            assert "请至少选择 2 个可多地联办的事项" in page and 'id="apply"' not in page
            status, page = await bundle(http, f"items={land}&items=999999-XX-0001&go=1")
            assert checked_and_offered(page)[0] == [land]
            too_many = "&".join(f"items=430400-DJ-{n:04d}" for n in range(1, 12))
            status, page = await bundle(http, f"{too_many}&go=1")
            assert "最多包含 10 个事项" in page

            # Pager links carry the chosen items and the search.
            monkeypatch.setattr("node.pages.window.PAGE_SIZE", 1)
            status, page = await bundle(http, f"items={land}&province=37")
            assert checked_and_offered(page) == ([land], [company])
            status, page = await bundle(http, "")
            assert checked_and_offered(page) == ([], [company])
            assert 'href="?page=2"' in page
            status, page = await bundle(http, f"items={land}&items={company}&q=DJ")
            assert checked_and_offered(page) == ([land, company], [])
            assert "没有符合条件的可多地联办事项" in page

            status, page = await bundle(http, f"items={land}&province=99")
            assert status == 400 and "省份应为两位行政区划代码" in page
    finally:
        for node in started:
            await node.stop()


def test_pager_links_keep_repeated_parameters() -> None:
    paged = Paged(["x"], 2, 3, 3, 1)
    links = nav([("items", "A"), ("items", "B"), ("q", "登记"), ("page", "2")], "page", paged)
    assert links == {
        "prev": "?items=A&items=B&q=%E7%99%BB%E8%AE%B0",
        "next": "?items=A&items=B&q=%E7%99%BB%E8%AE%B0&page=3",
    }
