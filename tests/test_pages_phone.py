"""Every page of the node at phone width (375 px): nothing may make the screen scroll sideways.

The pages are listed from the app's router (every GET route that is not the API, federation,
health or static files), so a page added later is covered without touching this test. Path
parameters are filled from real data made through the API of three running nodes: a 异地代收代办
case with a scheduled video inspection and a 多地联办 bundle. Each page is loaded without a
session and as each staff role until one is allowed to see it; a screenshot of each goes to
test-output/test_every_page_fits_a_phone/. Each page must also come with its
Content-Security-Policy, hold nothing inline that the policy blocks, and cause no violation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page

from node.accounts.sessions import cookie_name
from node.accounts.staff import ROLE_LABELS
from tests.support.api import ApiClient, form_login
from tests.support.browser import PHONE, chromium, output_dir, overflowing
from tests.support.csp import directives, inline_code
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.nodes import RunningNode
from tests.support.pages import page_paths
from tests.support.regions import materials_for, start_regions
from tests.support.videocalls import answered_call
from tests.support.waiting import wait_until

ITEM = "430400-XK-0002"  # 公共场所卫生许可（新办）: 衡阳市 inspects the site by video
APPLICANT = {
    "kind": "person",
    "name": "刘洋",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13973900002",
}


def fill(path: str, values: dict[str, Any]) -> str | None:
    """``path`` with its parameters from ``values`` (None when this node has no value)."""
    missing = []

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        key = "bundle_id" if name == "id" and "/bundles/" in path else name
        value = values.get(key)
        if value is None:
            missing.append(name)
            return ""
        return str(value)

    filled = re.sub(r"\{([a-z_]+)(?::[^}]*)?\}", one, path)
    return None if missing else filled


async def _cookies(http: aiohttp.ClientSession, node: RunningNode) -> dict[str, dict[str, str]]:
    """Each role's session cookie on ``node`` (the login form, as a browser would post it)."""
    cookies: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in ROLE_LABELS:
        async with await form_login(http, node.url, role) as resp:
            assert resp.status == 302, role
            name = cookie_name(node.config.region)
            cookies[role] = {name: resp.cookies[name].value}
    return cookies


async def _who_may_see(
    http: aiohttp.ClientSession, url: str, cookies: dict[str, dict[str, str]]
) -> tuple[str | None, list[str]]:
    """The first of anonymous and the roles that gets the page itself (200, HTML)."""
    tried = []
    for who, jar in cookies.items():
        async with http.get(url, cookies=jar, allow_redirects=False) as resp:
            if resp.status == 200 and resp.content_type == "text/html":
                return who, tried
            tried.append(f"{who}: {resp.status}")
    return None, tried


async def hidden_columns_without_hint(page: Page) -> list[str]:
    """Tables that scroll sideways on the page (their columns partly out of view) with no
    visible 左右滑动 hint; and hints shown over tables that fit."""
    return list(
        await page.evaluate(
            """() => {
              const bad = [];
              for (const wrap of document.querySelectorAll('.table-wrap')) {
                const table = wrap.querySelector('table');
                const name = table && table.id ? '#' + table.id : 'table';
                const hint = wrap.querySelector('.scroll-hint');
                const shown = hint !== null && hint.getBoundingClientRect().height > 0;
                const wide = wrap.scrollWidth > wrap.clientWidth + 1;
                if (wide && !shown) bad.push(name + ' hides columns without a hint');
                if (!wide && shown) bad.push(name + ' hints at columns it does not hide');
              }
              return bad;
            }"""
        )
    )


async def test_every_page_fits_a_phone(tmp_path: Path, databases: DatabaseFactory) -> None:
    nodes = await start_regions(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市"), ("370500", "东营市")]
    )
    shaoyang, hengyang, _dongying = nodes
    shots = output_dir("test_every_page_fits_a_phone")
    try:
        async with aiohttp.ClientSession() as http:
            clerk = await ApiClient(shaoyang.url, http).login("clerk")
            approver = await ApiClient(hengyang.url, http).login("approver")
            inspector = await ApiClient(hengyang.url, http).login("inspector")
            item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
            created = await clerk.ok(
                "POST",
                "/api/v1/cases",
                {
                    "item_code": ITEM,
                    "mode": "proxy",
                    "applicant": APPLICANT,
                    "form": form_for(item),
                    "materials": await materials_for(clerk, item),
                    "identity_verified": True,
                    "delivery": {"method": "window", "address": None},
                },
                status=201,
            )
            case_no, code = created["case"]["case_no"], created["query_code"]

            async def arrived() -> bool:
                listing = await approver.ok("GET", f"/api/v1/cases?q={case_no}")
                return bool(listing["cases"])

            await wait_until(arrived)
            [there] = (await approver.ok("GET", f"/api/v1/cases?q={case_no}"))["cases"]
            await approver.act(there["id"], "accept")
            scheduled = await inspector.act(
                there["id"],
                "schedule_inspection",
                {"scheduled_at": "2030-06-03T10:00:00+08:00", "site_address": "衡阳市石鼓区"},
            )
            session_id = scheduled["details"]["inspection"]["session_id"]

            async def mirrored() -> bool:
                case = await clerk.ok("GET", f"/api/v1/cases/{created['case']['id']}")
                return bool(case["status"] == "inspection")

            await wait_until(mirrored)

            parts = []
            for part_code in ("430400-DJ-0001", "370500-DJ-0001"):
                part_item = await clerk.ok("GET", f"/api/v1/catalog/{part_code}")
                parts.append(
                    {
                        "item_code": part_code,
                        "form": form_for(part_item),
                        "materials": await materials_for(clerk, part_item),
                    }
                )
            bundle = await clerk.ok(
                "POST",
                "/api/v1/bundles",
                {
                    "name": "异地购房并开办企业一件事",
                    "applicant": APPLICANT,
                    "parts": parts,
                    "identity_verified": True,
                    "delivery": {"method": "window", "address": None},
                },
                status=201,
            )

        values = {
            shaoyang.config.region: {
                "id": created["case"]["id"],
                "case_id": created["case"]["id"],
                "bundle_id": bundle["bundle"]["id"],
                "code": ITEM,
                "region": ITEM[:6],
                "session_id": session_id,
                "call_id": await answered_call(shaoyang),
            },
            hengyang.config.region: {
                "id": there["id"],
                "case_id": there["id"],
                "code": ITEM,
                "region": ITEM[:6],
                "session_id": session_id,
                # 全程网办 of its own item (no identity provider here: the page says so;
                # tests/test_pages_apply.py fills the form itself at 390 px).
                "item_code": ITEM,
                "call_id": await answered_call(hengyang),
            },
        }
        assert shaoyang.app is not None
        paths = page_paths(shaoyang.app)
        assert {"/login", "/query"} <= set(paths)

        loaded: dict[str, list[str]] = {path: [] for path in paths}
        refused: dict[str, list[str]] = {path: [] for path in paths}
        wide: dict[str, list[str]] = {}
        unhinted: dict[str, list[str]] = {}
        async with chromium() as browser, aiohttp.ClientSession() as http:
            for node in (shaoyang, hengyang):
                cookies = await _cookies(http, node)
                tabs: dict[str, Page] = {}
                for path in paths:
                    url_path = fill(path, values[node.config.region])
                    if url_path is None:
                        refused[path].append(f"{node.config.region}: no value for its parameters")
                        continue
                    who, tried = await _who_may_see(http, node.url + url_path, cookies)
                    if who is None:
                        refused[path] += [f"{node.config.region} {t}" for t in tried]
                        continue
                    if who not in tabs:
                        context = await browser.new_context(viewport=PHONE)
                        host = node.url.split("//", 1)[1].split(":")[0]
                        await context.add_cookies(
                            [
                                {"name": k, "value": v, "domain": host, "path": "/"}
                                for k, v in cookies[who].items()
                            ]
                        )
                        tabs[who] = await context.new_page()
                    page = tabs[who]
                    response = await page.goto(node.url + url_path)
                    assert response is not None and response.status == 200, (url_path, who)
                    # Each page as served: under the CSP, with nothing inline it would block.
                    policy = directives(
                        await response.header_value("content-security-policy") or ""
                    )
                    assert policy.get("script-src") == ["'self'"], (url_path, who)
                    assert not inline_code(await response.text()), (url_path, who)
                    name = re.sub(r"[^A-Za-z0-9]+", "_", url_path).strip("_")[:60]
                    await page.screenshot(
                        path=shots / f"{node.config.region}-{name}-{who}.png", full_page=True
                    )
                    if problems := await overflowing(page):
                        wide[f"{node.config.region} {url_path} ({who})"] = problems
                    if silent := await hidden_columns_without_hint(page):
                        unhinted[f"{node.config.region} {url_path} ({who})"] = silent
                    loaded[path].append(f"{node.config.region}/{who}")
                for tab in tabs.values():
                    await tab.context.close()

            # The citizen's result page (a POST, so not in the router's GET list): the case in
            # its inspection state shows when and how to join.
            context = await browser.new_context(viewport=PHONE)
            page = await context.new_page()
            await page.goto(f"{shaoyang.url}/query?case={case_no}")
            await page.get_by_label("查询码").fill(code)
            await page.get_by_role("button", name="查询").click()
            await page.wait_for_load_state()
            assert await page.locator("#case-status").inner_text() == "勘验中"
            assert await page.locator("#join-inspection").is_visible()
            await page.screenshot(path=shots / "430523-query-result.png", full_page=True)
            if problems := await overflowing(page):
                wide["430523 /query result"] = problems
            await page.goto(f"{shaoyang.url}/query")
            await page.get_by_label("受理编号").fill(bundle["bundle"]["bundle_no"])
            await page.get_by_label("查询码").fill(bundle["query_code"])
            await page.get_by_role("button", name="查询").click()
            await page.wait_for_load_state()
            assert "多地联办进度" in await page.locator("main").inner_text()
            await page.screenshot(path=shots / "430523-query-bundle.png", full_page=True)
            if problems := await overflowing(page):
                wide["430523 /query bundle"] = problems
            # A table wider than the phone says so; one that fits does not (app.css, app.js).
            await page.evaluate(
                """() => {
                  const row = (n) => '<tr><th scope="row">地区</th>' + '<td>123456</td>'.repeat(n) + '</tr>';
                  const wrap = (id, n) => '<div class="table-wrap"><p class="scroll-hint">表格较宽</p>'
                    + '<table id="' + id + '"><tbody>' + row(n) + '</tbody></table></div>';
                  document.querySelector('main').insertAdjacentHTML('beforeend', wrap('wide', 14) + wrap('narrow', 1));
                  window.dispatchEvent(new Event('resize'));
                }"""
            )
            assert await hidden_columns_without_hint(page) == []
            assert (
                await page.locator("#wide").locator("xpath=..").locator(".scroll-hint").is_visible()
            )
            assert (
                not await page.locator("#narrow")
                .locator("xpath=..")
                .locator(".scroll-hint")
                .is_visible()
            )
            await context.close()

        # The identity provider's redirect target is no page to open (without a login in
        # progress it answers 400; tests/test_identity.py follows the real flow).
        never = {
            path: refused[path]
            for path, where in loaded.items()
            if not where and path != "/citizen/callback"
        }
        assert not never, f"pages no one could open: {never}"
        assert not wide, f"pages wider than a phone: {wide}"
        assert not unhinted, f"tables hiding columns on a phone without a hint: {unhinted}"
    finally:
        for node in nodes:
            await node.stop()
