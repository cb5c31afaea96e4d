"""The public 办事指南 over HTTP, on two running nodes with their sample catalogues: each item's
page is the catalogue's content (ours and a partner's), the search finds by name, keyword and
region and pages its results, an unknown item is a Chinese 404 page, and a newly loaded
catalogue changes the pages at once (with a new version). Also the optional catalogue fields
the guide reads and the ``[hall]`` settings."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.catalog import items as items_module
from node.catalog import search as search_module
from node.catalog import versions
from node.catalog.items import our_items
from node.catalog.loading import SAMPLES_DIR, load_catalog, parse_catalog
from node.catalog.search import SearchQuery
from node.catalog.versions import catalog_version, region_catalog
from node.config import ConfigError, NodeConfig
from node.pages import guide
from node.pages.guide import QR_PAGE_SIZE
from protocol.catalog import Item, check_item
from protocol.errors import ProtocolError
from tests.support.csp import inline_code
from tests.support.databases import DatabaseFactory
from tests.support.guide import HALL, refresh, start_with_hall
from tests.support.html import Element, by_id, parse
from tests.support.nodes import RunningNode

HTML = {"Accept": "text/html"}


@pytest.fixture
async def regions(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    nodes = await start_with_hall(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")], {"430523": HALL}
    )
    yield nodes
    for node in nodes:
        await node.stop()


async def get(url: str) -> tuple[int, aiohttp.ClientResponse, str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=HTML) as resp:
        return resp.status, resp, await resp.text()


async def page(url: str, status: int = 200) -> Element:
    got, resp, text = await get(url)
    assert got == status, (url, got, text[:500])
    assert resp.content_type == "text/html"
    assert '<html lang="zh-CN">' in text
    return parse(text)


def sample(region: str) -> list[Item]:
    """A region's sample catalogue, by code (as the guide lists it)."""
    path = SAMPLES_DIR / f"{region}.toml"
    return sorted(parse_catalog(region, path.read_text(encoding="utf-8")), key=lambda i: i.code)


def cell(root: Element, row: str, label: str) -> str:
    """The ``<dd>`` after ``<dt>label</dt>`` inside the element with id ``row``."""
    items = by_id(root, row).find_all()
    for index, element in enumerate(items):
        if element.tag == "dt" and element.text == label:
            return next(e.text for e in items[index + 1 :] if e.tag == "dd")
    raise AssertionError(f"no {label} in #{row}")


def result_codes(root: Element) -> list[str]:
    return [a.attrs["href"].rsplit("/", 1)[1] for a in root.find_all("a", "guide-name")]


# -- the item page -------------------------------------------------------------------------


async def test_an_own_item_page_is_the_catalogue_item(regions: list[RunningNode]) -> None:
    _shaoyang, hengyang = regions
    item = next(i for i in sample("430400") if i.code == "430400-XK-0002")
    root = await page(f"{hengyang.url}/guide/430400/430400-XK-0002")
    assert by_id(root, "item-title").text == item.name == "公共场所卫生许可（新办）"
    assert by_id(root, "summary").text == item.summary
    assert [li.text for li in by_id(root, "conditions").find_all("li")] == list(item.conditions)
    rows = by_id(root, "materials").find_all("tr")[1:]
    assert [r.attrs["data-code"] for r in rows] == [m.code for m in item.materials]
    marks = {r.attrs["data-code"]: r.find_all("td")[4].text for r in rows}
    for material in item.materials:
        expected = " ".join(
            [
                w
                for w, on in (("可容缺", material.deferrable), ("可告知承诺", material.pledgeable))
                if on
            ]
        ).replace(" ", "")
        assert marks[material.code].replace(" ", "") == (expected or "—"), material.code
    assert "可容缺可告知承诺" in marks.values()  # M04: both, as the sample says
    assert [li.text for li in by_id(root, "legal-basis").find_all("li")] == list(item.legal_basis)
    assert cell(root, "limits", "法定办结时限") == "20 个工作日"
    assert cell(root, "limits", "承诺办结时限").startswith("5 个工作日")
    assert cell(root, "limits", "收费") == "不收费"
    assert cell(root, "limits", "现场勘验").startswith("需要")
    assert cell(root, "result", "结果类型") == "许可证"
    assert cell(root, "result", "结果名称") == "《公共场所卫生许可证》"
    assert cell(root, "result", "送达方式") == "窗口领取、邮寄送达"
    modes = {li.attrs["data-mode"]: li.text for li in by_id(root, "modes").find_all("li")}
    assert modes == {
        "proxy": "异地代收代办：可办理",
        "online": "全程网办：可办理",
        "joint": "多地联办：未开通",
    }
    # Our own item offered online: the online application page of this node.
    assert by_id(root, "apply-online").attrs["href"] == "/apply/430400-XK-0002"
    # 衡阳市 has no [hall] settings: the window is named, its details read 暂无.
    window = next(
        e
        for e in by_id(root, "channels").find_all("section")
        if e.attrs["data-channel"] == "window"
    )
    assert "衡阳市政务服务中心 跨域通办窗口" in window.text
    assert window.text.count("暂无") == 4
    assert cell(root, "contact", "咨询电话") == "0734-12345"
    assert cell(root, "contact", "监督投诉电话") == "0734-8868110"
    # The catalogue version it was made from, and a QR code of the page's own address.
    version = catalog_version(await our_items(hengyang.db))
    assert version in by_id(root, "catalog-version").text
    assert "衡阳市事项目录" in by_id(root, "catalog-version").text
    svg = root.find_all("svg")
    assert (
        len(svg) == 1 and svg[0].attrs["aria-label"] == "「公共场所卫生许可（新办）」办事指南二维码"
    )


async def test_a_partner_item_page_names_this_hall_and_the_same_version(
    regions: list[RunningNode],
) -> None:
    shaoyang, hengyang = regions
    url = "/guide/430400/430400-XK-0002"
    there, here = await page(hengyang.url + url), await page(shaoyang.url + url)
    assert by_id(here, "item-title").text == "公共场所卫生许可（新办）"
    # One catalogue, one version, on both nodes.
    version = catalog_version(await our_items(hengyang.db))
    assert version in by_id(here, "catalog-version").text
    assert (
        by_id(here, "catalog-version").text.replace("同步", "更新").split("（")[0]
        == (by_id(there, "catalog-version").text.split("（")[0])
    )
    # Ours is dated by our last load, a partner's by our last verified fetch of it.
    assert "更新）" in by_id(there, "catalog-version").text
    assert "同步）" in by_id(here, "catalog-version").text
    channels = by_id(here, "channels").find_all("section")
    assert [c.attrs["data-channel"] for c in channels] == ["window", "online"]
    window = channels[0]
    assert "邵阳县政务服务中心 跨域通办窗口" in window.text
    assert "异地代收代办：窗口收件后转交衡阳市办理" in window.text
    assert cell(here, "channels", "地址") == "邵阳县塘渡口镇政务服务中心一楼"
    assert cell(here, "channels", "办公时间").startswith("周一至周五 8:30-12:00")
    assert cell(here, "channels", "窗口") == "一楼 跨域通办专窗（8 号窗口）"
    assert cell(here, "channels", "咨询电话") == "0739-6866001"
    # Online at the handling region, not on this node: no link to our /apply.
    assert "在衡阳市政务服务网申请" in channels[1].text
    assert not [a for a in here.find_all("a") if a.attrs.get("href", "").startswith("/apply/")]
    # The QR code carries this node's address of the page.
    assert shaoyang.url != hengyang.url


async def test_missing_optional_fields_read_zanwu(regions: list[RunningNode]) -> None:
    shaoyang, _hengyang = regions
    item = next(i for i in sample("430400") if i.code == "430400-DJ-0001")
    assert item.summary is None and item.result_name is None and item.complaint_phone is None
    root = await page(f"{shaoyang.url}/guide/430400/430400-DJ-0001")
    assert by_id(root, "summary").text == "暂无"
    assert cell(root, "result", "结果名称") == "暂无"
    assert cell(root, "contact", "监督投诉电话") == "暂无"
    assert cell(root, "contact", "咨询电话") == "0734-12345"
    # Its materials: nothing deferrable or pledgeable is marked so.
    rows = by_id(root, "materials").find_all("tr")[1:]
    assert len(rows) == len(item.materials)


async def test_an_unknown_item_is_a_chinese_404(regions: list[RunningNode]) -> None:
    shaoyang, _ = regions
    for path in (
        "/guide/430400/430400-XK-9999",  # no such item
        "/guide/430523/430400-XK-0002",  # an item under another region
        "/guide/999999/999999-XK-0001",  # no such region
        "/guide/430400/<script>",
    ):
        status, resp, text = await get(shaoyang.url + path)
        assert status == 404, path
        assert resp.content_type == "text/html"
        root = parse(text)
        assert by_id(root, "not-found-message").text.startswith("未找到该事项的办事指南"), path
        assert "<script>" not in text.split("<main", 1)[1].split("</main>", 1)[0]
    # A program without Accept: text/html gets the same page (the guide is for people).
    async with aiohttp.ClientSession() as http, http.get(f"{shaoyang.url}/guide/x/y") as resp:
        assert resp.status == 404 and resp.content_type == "text/html"


# -- search and paging ---------------------------------------------------------------------


async def test_search_by_name_keyword_and_region(regions: list[RunningNode]) -> None:
    shaoyang, _ = regions
    everything = await page(f"{shaoyang.url}/guide")
    own, theirs = sample("430523"), sample("430400")
    # Ours first, then the partner's, by code.
    assert result_codes(everything) == [i.code for i in own + theirs]
    assert by_id(everything, "result-count").text == str(len(own + theirs))

    by_name = await page(f"{shaoyang.url}/guide?q=%E5%8D%AB%E7%94%9F")  # 卫生
    assert result_codes(by_name) == ["430400-XK-0002"]
    # 开店 is only a keyword of the item (its name lacks it); 卫生证 too. Keywords are matched
    # within a chosen region (its items are read); across all regions the index searches code,
    # name, department and place only (docs/pages.md).
    for keyword in ("开店", "卫生证"):
        found = await page(f"{shaoyang.url}/guide?region=430400&q={keyword}")
        assert result_codes(found) == ["430400-XK-0002"], keyword
        everywhere = await page(f"{shaoyang.url}/guide?q={keyword}")
        assert result_codes(everywhere) == [], keyword
    # Two words: both must match (name and department).
    both = await page(f"{shaoyang.url}/guide?q=许可 邵阳县市场监督管理局")
    assert result_codes(both) == ["430523-XK-0002"]
    by_code = await page(f"{shaoyang.url}/guide?q=430400-dj")
    assert result_codes(by_code) == ["430400-DJ-0001"]

    region = await page(f"{shaoyang.url}/guide?region=430400")
    assert result_codes(region) == [i.code for i in theirs]
    selected = [o for o in by_id(region, "region").find_all("option") if "selected" in o.attrs]
    assert [o.attrs["value"] for o in selected] == ["430400"]
    narrowed = await page(f"{shaoyang.url}/guide?region=430523&q=许可")
    assert result_codes(narrowed) == [i.code for i in own if "许可" in i.name]

    nothing = await page(f"{shaoyang.url}/guide?q=火箭发射")
    assert result_codes(nothing) == []
    assert by_id(nothing, "no-results").text.startswith("没有找到相关事项")

    unknown = await page(f"{shaoyang.url}/guide?region=110000", status=400)
    assert by_id(unknown, "guide-error").attrs["data-error"] == "unknown_region"
    # The search page links to the citizen's query page, and that page back to the guide.
    assert any(a.attrs.get("href") == "/query" for a in everything.find_all("a"))
    query = await page(f"{shaoyang.url}/query")
    assert by_id(query, "guide-link").attrs["href"] == "/guide"


def _many(region: str, count: int) -> list[Item]:
    template = next(i for i in sample(region) if i.code.endswith("XK-0002"))
    return [
        replace(template, code=f"{region}-QT-{n:04d}", name=f"测试事项第{n:02d}号")
        for n in range(1, count + 1)
    ]


async def test_results_are_paged(regions: list[RunningNode]) -> None:
    _shaoyang, hengyang = regions
    await load_catalog(hengyang.db, "430400", _many("430400", 45))
    base = f"{hengyang.url}/guide?region=430400&q=测试事项"
    first = await page(base)
    assert result_codes(first) == [f"430400-QT-{n:04d}" for n in range(1, 21)]
    assert by_id(first, "result-count").text == "45"
    assert by_id(first, "page-of").text == "第 1 / 3 页"
    pager = first.find_all("nav", "pager")[0]
    links = {a.attrs["rel"]: a.attrs["href"] for a in pager.find_all("a")}
    assert set(links) == {"next"}
    # The next page keeps the search: follow the link as a browser would.
    second = await page(hengyang.url + links["next"].replace("&amp;", "&"))
    assert result_codes(second) == [f"430400-QT-{n:04d}" for n in range(21, 41)]
    assert by_id(second, "page-of").text == "第 2 / 3 页"
    assert second.find_all("ol", "guide-list")[0].attrs["start"] == "21"
    last = await page(f"{base}&page=3")
    assert result_codes(last) == [f"430400-QT-{n:04d}" for n in range(41, 46)]
    assert {a.attrs["rel"] for a in last.find_all("nav", "pager")[0].find_all("a")} == {"prev"}
    for bad in ("4", "0", "-1", "abc", "1.5", "１", "99999999999"):
        refused = await page(f"{base}&page={bad}", status=400)
        assert by_id(refused, "guide-error").attrs["data-error"] == "invalid_page", bad
        assert result_codes(refused) == []


# -- one region at a time -----------------------------------------------------------------


def versions_shown(root: Element) -> list[str]:
    """The regions whose catalogue version the search page names."""
    line = by_id(root, "catalog-versions")
    return [e.attrs["data-region"] for e in line.find_all("span") if "data-region" in e.attrs]


async def test_a_search_across_regions_comes_from_the_index(
    regions: list[RunningNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    shaoyang, _ = regions
    asked: list[SearchQuery] = []
    real = guide.search

    async def counting(db: Any, query: SearchQuery, **kwargs: Any) -> Any:
        asked.append(query)
        return await real(db, query, **kwargs)

    monkeypatch.setattr(guide, "search", counting)
    # A partner's item by (part of) its name, no region chosen: found through the index.
    root = await page(f"{shaoyang.url}/guide?q=公共场所卫生许可")
    assert result_codes(root) == ["430400-XK-0002"]
    assert [q.text for q in asked] == ["公共场所卫生许可"]
    first = root.find_all("li", "guide-item")[0]
    assert "衡阳市" in first.text and "承诺 5 个工作日" in first.text
    # Several words: all must match; the place (province and region name) counts too.
    asked.clear()
    both = await page(f"{shaoyang.url}/guide?q=卫生 衡阳市")
    assert result_codes(both) == ["430400-XK-0002"]
    assert [q.text for q in asked] == ["衡阳市"]  # the longest word, then filtered
    # A chosen region is read from its own items, not the index.
    asked.clear()
    await page(f"{shaoyang.url}/guide?region=430400&q=开店")
    assert asked == []
    # A province narrows the search across regions.
    hunan = await page(f"{shaoyang.url}/guide?province=43")
    assert len(result_codes(hunan)) == len(sample("430523") + sample("430400"))
    shandong = await page(f"{shaoyang.url}/guide?province=37")
    assert result_codes(shandong) == []
    # More matches than the index counts: only the first are listed, and the page says so.
    monkeypatch.setattr(search_module, "MAX_RESULTS", 3)
    capped = await page(f"{shaoyang.url}/guide?q=许可")
    assert by_id(capped, "result-count").text == "3"
    assert by_id(capped, "results-capped").text.startswith("符合条件的事项超过")


async def test_the_search_names_one_region_and_lists_one_province(
    regions: list[RunningNode],
) -> None:
    shaoyang, _ = regions
    # No region chosen: our own catalogue's version, and our province's regions, ours first.
    root = await page(f"{shaoyang.url}/guide")
    assert versions_shown(root) == ["430523"]
    own_version = catalog_version(sample("430523"))
    assert own_version in by_id(root, "catalog-versions").text
    options = [o.attrs["value"] for o in by_id(root, "region").find_all("option")]
    assert options == ["", "430523", "430400"]
    provinces = [o.attrs["value"] for o in by_id(root, "province").find_all("option")]
    assert provinces[0] == "" and len(provinces) == 35  # 全国 and 34 provinces
    assert not [o for o in by_id(root, "province").find_all("option") if "selected" in o.attrs]
    # A partner's region chosen: its version only, its province selected.
    theirs = await page(f"{shaoyang.url}/guide?region=430400")
    assert versions_shown(theirs) == ["430400"]
    assert catalog_version(sample("430400")) in by_id(theirs, "catalog-versions").text
    chosen = [o for o in by_id(theirs, "province").find_all("option") if "selected" in o.attrs]
    assert [o.attrs["value"] for o in chosen] == ["43"]
    # Another province: its regions (none here) after our own; a region left selected from
    # the old province is dropped (a visitor without script changed the province).
    other = await page(f"{shaoyang.url}/guide?province=37&region=430400")
    assert [o.attrs["value"] for o in by_id(other, "region").find_all("option")] == ["", "430523"]
    assert result_codes(other) == []
    assert versions_shown(other) == ["430523"]


async def test_bad_search_parameters_are_refused(regions: list[RunningNode]) -> None:
    shaoyang, _ = regions
    for query, status, code in (
        ("province=99", 400, "invalid_province"),
        ("province=hunan", 400, "invalid_province"),
        ("province=43&region=abc", 400, "unknown_region"),
        ("region=4304", 400, "unknown_region"),
        ("region=110000", 400, "unknown_region"),
        ("region=<b>", 400, "unknown_region"),
        ("page=2", 400, "invalid_page"),  # past the index's last page
        ("q=许可&page=0", 400, "invalid_page"),
        ("q=许可 卫生&page=5", 400, "invalid_page"),
        ("region=430400&page=x", 400, "invalid_page"),
    ):
        refused = await page(f"{shaoyang.url}/guide?{query}", status=status)
        assert by_id(refused, "guide-error").attrs["data-error"] == code, query
        assert result_codes(refused) == [], query
        # The form is still there to try again.
        assert by_id(refused, "region").find_all("option"), query


async def test_no_guide_request_reads_every_region(
    regions: list[RunningNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide reads at most one region's catalogue: the functions that read every region's
    items are never called, wherever they were imported, and the whole-catalogue snapshot is
    gone."""
    shaoyang, hengyang = regions
    assert importlib.util.find_spec("node.catalog.snapshot") is None
    called: list[str] = []
    for name in ("our_items", "partner_items"):
        real = getattr(items_module, name)

        async def refuse(*args: Any, _name: str = name, **kwargs: Any) -> Any:
            called.append(_name)
            raise AssertionError(f"{_name} read every region's items")

        for module in list(sys.modules.values()):
            if getattr(module, name, None) is real:
                monkeypatch.setattr(module, name, refuse)
    for node in (shaoyang, hengyang):
        for path in (
            "/guide",
            "/guide?q=许可",
            "/guide?q=许可 衡阳",
            "/guide?province=43",
            "/guide?region=430400&q=开店",
            "/guide?region=430523",
            "/guide/430400/430400-XK-0002",
            "/guide/430523/430523-XK-0002",
            "/guide/qr-sheet",
            "/guide/qr-sheet?region=430400",
        ):
            status, _resp, _text = await get(node.url + path)
            assert status == 200, (node.config.region, path)
    assert called == []


async def test_region_versions_are_kept_in_a_small_cache(
    regions: list[RunningNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    shaoyang, _ = regions
    monkeypatch.setattr(versions, "CACHED_VERSIONS", 1)
    monkeypatch.setattr(versions, "CACHED_CATALOGS", 1)
    ours = await versions.region_version(shaoyang.db, "430523", "430523")
    theirs = await versions.region_version(shaoyang.db, "430523", "430400")
    assert ours is not None and ours.own and ours.version == catalog_version(sample("430523"))
    assert theirs is not None and not theirs.own
    assert theirs.version == catalog_version(sample("430400"))
    assert [key[0] for key in versions._versions[shaoyang.db]] == ["430400"]
    assert [key[0] for key in versions._catalogs[shaoyang.db]] == ["430400"]
    # A cached region's items are the ones read (same key, same object: nothing parsed again).
    again = await versions.region_catalog(shaoyang.db, "430523", "430400")
    assert again is versions._catalogs[shaoyang.db][next(iter(versions._catalogs[shaoyang.db]))]
    assert again is not None and again.item("430400-XK-0002") is not None
    # A region we hold no catalogue of has no version (and is not cached).
    assert await versions.region_version(shaoyang.db, "430523", "110000") is None
    assert await versions.region_catalog(shaoyang.db, "430523", "110000") is None


# -- the catalogue changes -----------------------------------------------------------------


async def test_a_new_catalogue_changes_the_guide(
    regions: list[RunningNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    shaoyang, hengyang = regions
    url = "/guide/430400/430400-XK-0002"
    before = await page(hengyang.url + url)
    old_version = catalog_version(await our_items(hengyang.db))
    assert old_version in by_id(before, "catalog-version").text
    # Unchanged, the region's version is digested once and then cached; any load changes it.
    kept = await region_catalog(hengyang.db, "430400", "430400")
    assert kept is not None and kept.version == old_version
    digests: list[int] = []
    digest = versions.catalog_version
    monkeypatch.setattr(
        versions, "catalog_version", lambda items: digests.append(1) or digest(items)
    )
    again = await region_catalog(hengyang.db, "430400", "430400")
    assert again is not None and again.version == old_version and again.items == kept.items
    assert digests == []

    # The admin loads a new version of the file: a new name, a shorter promise, one item gone.
    text = (SAMPLES_DIR / "430400.toml").read_text(encoding="utf-8")
    text = text.replace(
        'name = "公共场所卫生许可（新办）"', 'name = "公共场所卫生许可（新办，告知承诺）"'
    )
    text = text.replace("promised_limit_days = 5\n", "promised_limit_days = 3\n", 1)
    items = [i for i in parse_catalog("430400", text) if i.code != "430400-DJ-0001"]
    assert next(i for i in items if i.code == "430400-XK-0002").promised_limit_days == 3
    await load_catalog(hengyang.db, "430400", items)

    after = await page(hengyang.url + url)
    new_version = catalog_version(await our_items(hengyang.db))
    assert new_version != old_version
    changed = await region_catalog(hengyang.db, "430400", "430400")
    assert changed is not None and changed.version == new_version and digests == [1]
    assert by_id(after, "item-title").text == "公共场所卫生许可（新办，告知承诺）"
    assert cell(after, "limits", "承诺办结时限").startswith("3 个工作日")
    assert new_version in by_id(after, "catalog-version").text
    assert old_version not in by_id(after, "catalog-version").text
    retired = await page(f"{hengyang.url}/guide/430400/430400-DJ-0001", status=404)
    assert by_id(retired, "not-found-message").text.startswith("未找到该事项")
    listing = await page(f"{hengyang.url}/guide")
    assert "430400-DJ-0001" not in result_codes(listing)

    # The partner shows the old catalogue until it fetches the new one, then the new one.
    stale = await page(shaoyang.url + url)
    assert old_version in by_id(stale, "catalog-version").text
    await refresh(shaoyang, hengyang)
    fresh = await page(shaoyang.url + url)
    assert by_id(fresh, "item-title").text == "公共场所卫生许可（新办，告知承诺）"
    assert new_version in by_id(fresh, "catalog-version").text
    await page(f"{shaoyang.url}/guide/430400/430400-DJ-0001", status=404)


# -- the QR sheet --------------------------------------------------------------------------


async def test_the_qr_sheet_has_one_code_per_item(regions: list[RunningNode]) -> None:
    shaoyang, _ = regions
    root = await page(f"{shaoyang.url}/guide/qr-sheet?region=430400")
    cells = root.find_all("li", "qr-cell")
    codes = [c.find_all("span", "qr-code-text")[0].text for c in cells]
    assert codes == [i.code for i in sample("430400")]
    assert [c.attrs["data-url"] for c in cells] == [
        f"{shaoyang.url}/guide/430400/{code}" for code in codes
    ]
    assert all(len(c.find_all("svg")) == 1 for c in cells)
    names = [c.find_all("span", "qr-name")[0].text for c in cells]
    assert names == [i.name for i in sample("430400")]
    # Without a region: this node's own items.
    own = await page(f"{shaoyang.url}/guide/qr-sheet")
    assert len(own.find_all("li", "qr-cell")) == len(sample("430523"))
    missing = await page(f"{shaoyang.url}/guide/qr-sheet?region=110000", status=404)
    assert by_id(missing, "not-found-message").text == "没有这个办理地的事项目录。"
    assert by_id(missing, "not-found-message").attrs["data-error"] == "not_found"


async def test_a_long_qr_sheet_is_paged(regions: list[RunningNode]) -> None:
    _shaoyang, hengyang = regions
    await load_catalog(hengyang.db, "430400", _many("430400", QR_PAGE_SIZE + 4))
    first = await page(f"{hengyang.url}/guide/qr-sheet?region=430400")
    assert len(first.find_all("li", "qr-cell")) == QR_PAGE_SIZE
    assert by_id(first, "page-of").text.startswith("第 1 / 2 页")
    [link] = first.find_all("nav", "pager")[0].find_all("a")
    assert link.attrs["rel"] == "next"
    second = await page(hengyang.url + link.attrs["href"])
    codes = [c.find_all("span", "qr-code-text")[0].text for c in second.find_all("li", "qr-cell")]
    assert codes == [f"430400-QT-{n:04d}" for n in range(QR_PAGE_SIZE + 1, QR_PAGE_SIZE + 5)]
    for bad in ("3", "0", "x"):
        refused = await page(f"{hengyang.url}/guide/qr-sheet?region=430400&page={bad}", 400)
        assert by_id(refused, "not-found-message").attrs["data-error"] == "invalid_page", bad


async def test_guide_pages_send_the_citizen_headers(regions: list[RunningNode]) -> None:
    shaoyang, _ = regions
    for path in ("/guide", "/guide/430400/430400-XK-0002", "/guide/qr-sheet", "/guide/a/b"):
        _status, resp, text = await get(shaoyang.url + path)
        assert resp.headers["Cache-Control"] == "no-cache", path
        assert resp.headers["Referrer-Policy"] == "no-referrer", path
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"], path
        assert re.search(r"<script(?![^>]*\bsrc=)", text) is None, path


async def test_a_partners_markup_stays_text(regions: list[RunningNode]) -> None:
    """A hostile partner publishes items whose words are HTML: every guide page shows them as
    text, in the QR code's label too, and nothing inline reaches the page."""
    shaoyang, hengyang = regions
    attack = '<img src=x onerror="alert(1)">'
    template = next(i for i in sample("430400") if i.code == "430400-XK-0002")
    hostile = replace(
        template,
        name=f"卫生许可{attack}",
        summary=f"</p><script>alert(1)</script>{attack}",
        keywords=("<b>x</b>",),
        result_name='"><svg onload=alert(1)>',
    )
    await load_catalog(hengyang.db, "430400", [hostile])
    await refresh(shaoyang, hengyang)
    for path in (
        "/guide/430400/430400-XK-0002",
        "/guide?q=卫生许可",
        "/guide/qr-sheet?region=430400",
    ):
        _status, _resp, text = await get(shaoyang.url + path)
        assert attack not in text and "<script>alert" not in text, path
        assert "<svg onload" not in text, path
        assert inline_code(text) == [], path
    root = await page(f"{shaoyang.url}/guide/430400/430400-XK-0002")
    assert by_id(root, "item-title").text == f"卫生许可{attack}"
    assert by_id(root, "summary").text == f"</p><script>alert(1)</script>{attack}"
    assert root.find_all("svg")[0].attrs["aria-label"] == f"「卫生许可{attack}」办事指南二维码"


# -- the catalogue fields and the hall settings --------------------------------------------


def test_the_guide_fields_are_optional_and_checked() -> None:
    item = next(i for i in sample("430400") if i.code == "430400-XK-0002")
    wire = item.to_dict()
    assert wire["keywords"] == list(item.keywords) and "开店" in wire["keywords"]
    assert Item.from_dict(wire) == item
    check_item(wire)
    bare = {k: v for k, v in wire.items() if k not in {"summary", "keywords", "result_name"}}
    check_item(bare)
    for field, value in (
        ("keywords", ["开店", "开店"]),
        ("keywords", []),
        ("keywords", ["一" * 21]),
        ("summary", "  "),
        ("result_name", "a\nb"),
        ("complaint_phone", "1" * 41),
    ):
        with pytest.raises(ProtocolError) as caught:
            check_item({**wire, field: value})
        assert field in str(caught.value.extra.get("path")), (field, value)


def test_hall_settings(tmp_path: Path) -> None:
    base = {"region": "430523", "name": "邵阳县", "url": "http://127.0.0.1:1"}
    config = NodeConfig.from_dict(tmp_path, {**base, "hall": {"name": " 邵阳县政务服务中心 "}})
    assert config.hall.name == "邵阳县政务服务中心"
    assert config.hall.address is None
    assert NodeConfig.from_dict(tmp_path, base).hall.hours is None
    for hall, message in (
        ({"adress": "x"}, "unknown [hall] settings: adress"),
        ({"phone": 12345}, "[hall] phone"),
        ({"hours": ""}, "[hall] hours"),
        ({"address": "一\n二"}, "[hall] address"),
        ({"window": "长" * 201}, "[hall] window"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            NodeConfig.from_dict(tmp_path, {**base, "hall": hall})
    with pytest.raises(ConfigError, match=r"\[hall\] must be a table"):
        NodeConfig.from_dict(tmp_path, {**base, "hall": "x"})
