"""全程网办 on a phone (390 px, real Chromium): a citizen opens /apply/{item}, signs in at the
development identity provider, fills the item's form, photographs the materials (a real JPEG
that Chromium's own encoder made), signs 告知承诺, chooses mail delivery and gets the receipt;
the case is on the node as identity-verified with the token's name. Every page of the flow
is measured (bytes transferred with the cache off, via CDP) and must stay under 200 KB and
fit the screen. Without JavaScript the same form works by a plain multipart POST: a forged
form (no CSRF token first) stores nothing, and a file that is not a PDF/JPEG/PNG is refused
with the form shown again."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import CDPSession, Page
from sqlalchemy import func, select

from node.cases.models import cases, uploads
from node.identity.models import citizen_session_ends
from node.identity.session import session_cookie_name
from tests.support.api import ApiClient
from tests.support.browser import chromium, output_dir, overflowing
from tests.support.databases import DatabaseFactory
from tests.support.identity import (
    LIU_YANG,
    citizen_login,
    identity_toml,
    running_provider,
    trust,
)
from tests.support.nodes import RunningNode
from tests.support.regions import start_regions

ITEM = "430400-XK-0002"  # 公共场所卫生许可（新办）: M04/M05 告知承诺, the rest photographed
PHONE_390 = {"width": 390, "height": 844}
LIMIT = 200 * 1024
FORM = {
    "business_name": "刘洋足浴店",
    "business_address": "衡阳市蒸湘区船山大道88号",
    "category": "沐浴场所",
    "area_m2": "120",
    "staff_count": "6",
    "health_officer": "刘洋",
}
PHOTOGRAPHED = ("M01", "M02", "M03", "M06")
PLEDGED = ("M04", "M05")


class Transfers:
    """Bytes on the wire per page load (CDP ``Network.loadingFinished``, headers included),
    with the browser cache off so every load is a first load."""

    def __init__(self, cdp: CDPSession) -> None:
        self.cdp = cdp
        self.total = 0
        self.urls: list[str] = []
        self._pending: dict[str, str] = {}

    async def start(self) -> None:
        self.cdp.on("Network.responseReceived", self._response)
        self.cdp.on("Network.loadingFinished", self._finished)
        await self.cdp.send("Network.enable")
        await self.cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})

    def _response(self, event: dict[str, Any]) -> None:
        self._pending[event["requestId"]] = event["response"]["url"]

    def _finished(self, event: dict[str, Any]) -> None:
        url = self._pending.pop(event["requestId"], "")
        self.total += int(event["encodedDataLength"])
        self.urls.append(url)

    def reset(self) -> None:
        self.total = 0
        self.urls = []


async def _jpeg(page: Page) -> bytes:
    """A real JPEG: a 'photo' drawn on a canvas and encoded by Chromium."""
    data = await page.evaluate(
        """() => {
          const c = document.createElement('canvas'); c.width = 800; c.height = 600;
          const g = c.getContext('2d');
          g.fillStyle = '#e8e0d0'; g.fillRect(0, 0, 800, 600);
          g.fillStyle = '#b22'; g.fillRect(40, 40, 720, 520);
          g.fillStyle = '#fff'; g.font = '64px sans-serif'; g.fillText('营业执照 photo', 80, 320);
          return c.toDataURL('image/jpeg', 0.85).split(',')[1];
        }"""
    )
    return base64.b64decode(data)


async def _fits(page: Page) -> tuple[int, int, list[str]]:
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return int(widths[0]), int(widths[1]), await overflowing(page)


@pytest.fixture
async def phone_node(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[Any]:
    async with running_provider() as idp:
        [node] = await start_regions(
            tmp_path,
            databases,
            [("430400", "衡阳市")],
            extra_toml=identity_toml(idp.provider.issuer),
        )
        trust(idp.provider, node)
        try:
            yield node, idp.provider
        finally:
            await node.stop()


async def test_a_citizen_applies_online_from_a_phone(phone_node: Any, tmp_path: Path) -> None:
    node, provider = phone_node
    shots = output_dir("test_a_citizen_applies_online_from_a_phone")
    measured: dict[str, int] = {}
    fit: dict[str, tuple[int, int, list[str]]] = {}
    async with chromium() as browser:
        maker = await browser.new_page()
        photo = tmp_path / "营业执照.jpg"
        photo.write_bytes(await _jpeg(maker))
        await maker.close()
        assert photo.read_bytes().startswith(b"\xff\xd8\xff")

        context = await browser.new_context(viewport=PHONE_390, is_mobile=True, has_touch=True)
        page = await context.new_page()
        transfers = Transfers(await context.new_cdp_session(page))
        await transfers.start()

        async def ours(name: str) -> None:
            await page.wait_for_load_state("load")
            measured[name] = transfers.total
            fit[name] = await _fits(page)
            await page.screenshot(path=shots / f"{name}.png", full_page=True)
            transfers.reset()

        # Not signed in: the apply page sends the citizen to the identity provider.
        await page.goto(f"{node.url}/apply/{ITEM}")
        assert page.url.startswith(provider.issuer + "/authorize")
        assert "开发用身份认证服务" in await page.content()
        transfers.reset()
        await page.get_by_label(re.compile("刘洋")).check()
        await page.get_by_role("button", name="同意并登录").click()
        await page.wait_for_url(f"{node.url}/apply/{ITEM}")
        await ours("apply-form")
        assert await page.locator("#applicant-name").inner_text() == LIU_YANG.name
        # The narrowest phones in use: 360 px.
        await page.set_viewport_size({"width": 360, "height": 740})
        fit["apply-form at 360 px"] = await _fits(page)
        await page.set_viewport_size(PHONE_390)

        await page.fill("#phone", "13973900002")
        for name, value in FORM.items():
            field = page.locator(f"#form-{name}")
            if await field.evaluate("e => e.tagName") == "SELECT":
                await field.select_option(value)
            else:
                await field.fill(value)
        for code in PHOTOGRAPHED:
            picker = page.locator(f"#file-{code}")
            assert await picker.get_attribute("accept") == "image/*,application/pdf"
            assert await picker.get_attribute("capture") is not None
            await picker.set_input_files(str(photo))
        for code in PLEDGED:
            await page.locator(f"input[name='pledge.{code}']").check()
        await page.get_by_label("邮寄送达").check()
        await page.fill("#delivery-address", "湖南省衡阳市蒸湘区船山大道88号")
        await page.get_by_role("button", name="提交申请").click()
        await page.wait_for_selector("#receipt")
        await ours("receipt")
        case_no = await page.locator("#case-no").inner_text()
        code = await page.locator("#query-code").inner_text()
        assert re.fullmatch(r"430400-\d{8}-\d{5}", case_no) and re.fullmatch(r"\d{6}", code)

        # The receipt leads to /query with the number filled in; the code opens the case.
        await page.locator("#query-link").click()
        await ours("query")
        assert await page.get_by_label("受理编号").input_value() == case_no
        await page.get_by_label("查询码").fill(code)
        await page.get_by_role("button", name="查询").click()
        await ours("query-result")
        assert "已接件" in await page.locator("#case-status").inner_text()

        # The other citizen pages, first loads each: the guide and 视频办.
        for name, path in (
            ("guide", "/guide"),
            ("guide-item", f"/guide/{ITEM[:6]}/{ITEM}"),
            ("video", f"/video?item={ITEM}"),
        ):
            await page.goto(node.url + path)
            await ours(name)
        await context.close()

    for name, size in measured.items():
        assert 0 < size < LIMIT, (name, size)
    for name, (scroll, client, problems) in fit.items():
        assert scroll <= client and not problems, (name, scroll, client, problems)
    print("transferred bytes per page:", measured)

    # On the node: an online case of the verified citizen, photos kept as JPEG, pledges signed.
    async with aiohttp.ClientSession() as http:
        approver = await ApiClient(node.url, http).login("approver")
        listing = await approver.ok("GET", f"/api/v1/cases?q={case_no}")
        case = await approver.ok("GET", f"/api/v1/cases/{listing['cases'][0]['id']}")
    assert case["mode"] == "online" and case["applicant_name"] == LIU_YANG.name
    assert case["application"]["identity_verified"] is True
    assert case["application"]["identity"]["method"] == "oidc"
    assert case["application"]["delivery"]["method"] == "mail"
    statuses = {m["code"]: m["status"] for m in case["application"]["materials"]}
    assert statuses == {
        **dict.fromkeys(PHOTOGRAPHED, "provided"),
        **dict.fromkeys(PLEDGED, "pledged"),
    }
    blob = case["application"]["materials"][0]["blob"]
    async with node.db.read() as conn:
        kept = (await conn.execute(select(uploads).where(uploads.c.sha256 == blob))).one()
    assert kept.media_type == "image/jpeg" and kept.claimed_at is not None


async def _count(node: RunningNode) -> tuple[int, int]:
    async with node.db.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(cases))).scalar_one()
        files = (await conn.execute(select(func.count()).select_from(uploads))).scalar_one()
    return int(count), int(files)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def test_the_form_works_without_javascript_and_refuses_forgeries(phone_node: Any) -> None:
    node, provider = phone_node
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        page = await citizen_login(http, node, provider, f"/apply/{ITEM}")
        csrf = _csrf(page)
        before = await _count(node)
        # A form without the session's CSRF token first: refused before any file is kept.
        forged = aiohttp.FormData()
        forged.add_field("file.M01", b"%PDF-1.4 forged", filename="a.pdf")
        forged.add_field("csrf", csrf)
        async with http.post(f"{node.url}/apply/{ITEM}", data=forged) as resp:
            assert resp.status == 403
        assert await _count(node) == before
        # An HTML file as a material: refused by its bytes, the form comes back with the fault.
        form = aiohttp.FormData()
        form.add_field("csrf", csrf)
        form.add_field("phone", "13973900002")
        form.add_field("file.M01", b"<!doctype html><script>alert(1)</script>", filename="a.pdf")
        async with http.post(f"{node.url}/apply/{ITEM}", data=form) as resp:
            assert resp.status == 400
            text = await resp.text()
        assert "只接受 PDF、JPG、PNG 文件" in text and 'id="apply-errors"' in text
        assert await _count(node) == before
        # Two files for one material: refused (a form cannot store files without bound;
        # the first, stored already, is an unclaimed upload the janitor removes in a day).
        twice = aiohttp.FormData()
        twice.add_field("csrf", csrf)
        twice.add_field("file.M01", b"%PDF-1.4 first", filename="a.pdf")
        twice.add_field("file.M01", b"%PDF-1.4 second", filename="b.pdf")
        async with http.post(f"{node.url}/apply/{ITEM}", data=twice) as resp:
            assert resp.status == 403
        assert (await _count(node))[0] == before[0]
        # A plain POST of everything: the receipt, as the verified citizen.
        form = aiohttp.FormData()
        form.add_field("csrf", csrf)
        form.add_field("phone", "13973900002")
        for name, value in FORM.items():
            form.add_field(f"form.{name}", value)
        for code in PHOTOGRAPHED:
            form.add_field(f"file.{code}", b"%PDF-1.4 " + code.encode(), filename=f"{code}.pdf")
        for code in PLEDGED:
            form.add_field(f"pledge.{code}", "1")
        form.add_field("delivery_method", "window")
        async with http.post(f"{node.url}/apply/{ITEM}", data=form) as resp:
            assert resp.status == 200
            text = await resp.text()
        assert 'id="query-code"' in text and resp.headers["Cache-Control"] == "no-store"
        assert f"<dd>{LIU_YANG.name}</dd>" in text  # the applicant is the verified citizen
        assert (await _count(node))[0] == before[0] + 1
    # Someone else's item, or one not offered online, is not a page here.
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        for other in ("370500-XK-0001", "430400-DJ-0001"):
            async with http.get(f"{node.url}/apply/{other}", allow_redirects=False) as resp:
                assert resp.status == 404, other


async def test_a_logout_ends_every_copy_of_the_session(phone_node: Any) -> None:
    """退出登录 ends the session for a copy of its cookie too (taken from a shared phone, say),
    not only in the browser that signed out; a forged logout (no CSRF token) ends nothing."""
    node, provider = phone_node
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        page = await citizen_login(http, node, provider, f"/apply/{ITEM}")
        csrf = _csrf(page)
        name = session_cookie_name(node.config.region)
        copied = {c.key: c.value for c in jar if c.key == name}
        assert list(copied) == [name]

        async def form_status(cookies: dict[str, str]) -> int:
            url = f"{node.url}/apply/{ITEM}"
            async with (
                aiohttp.ClientSession(cookies=cookies) as other,
                other.get(url, allow_redirects=False) as resp,
            ):
                return resp.status

        assert await form_status(copied) == 200  # the copy works as well as the original
        async with http.post(
            f"{node.url}/citizen/logout", data={"csrf": "forged"}, allow_redirects=False
        ) as resp:
            assert resp.status == 302
        assert await form_status(copied) == 200
        async with http.post(
            f"{node.url}/citizen/logout", data={"csrf": csrf}, allow_redirects=False
        ) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "/query"
        assert name not in {c.key for c in jar}
        # The copy now leads to the login like no session at all.
        assert await form_status(copied) == 302
        async with node.db.read() as conn:
            ended = (await conn.execute(select(citizen_session_ends))).all()
        assert len(ended) == 1 and len(ended[0].sid_digest) == 64


async def test_without_a_provider_the_phone_form_takes_unverified_applications(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    """``allow_unverified_online`` and no provider: the applicant types name and ID number,
    the case is kept unverified and says so, and staff must check the identity first."""
    [node] = await start_regions(
        tmp_path,
        databases,
        [("430400", "衡阳市")],
        extra_toml="\n[identity]\nallow_unverified_online = true\n",
    )
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(f"{node.url}/apply/{ITEM}") as resp:
                assert resp.status == 200
                page = await resp.text()
            assert 'id="unverified-notice"' in page and 'name="applicant_name"' in page
            form = aiohttp.FormData()
            form.add_field("csrf", _csrf(page))
            form.add_field("applicant_name", "周敏")
            form.add_field("applicant_id_number", LIU_YANG.id_number)
            form.add_field("phone", "13973900003")
            for name, value in FORM.items():
                form.add_field(f"form.{name}", value)
            for code in PHOTOGRAPHED:
                form.add_field(f"file.{code}", b"%PDF-1.4 " + code.encode(), filename="a.pdf")
            for code in PLEDGED:
                form.add_field(f"pledge.{code}", "1")
            form.add_field("delivery_method", "window")
            async with http.post(f"{node.url}/apply/{ITEM}", data=form) as resp:
                assert resp.status == 200
                text = await resp.text()
            assert "<dd>周敏</dd>" in text and "未核验" in text
            approver = await ApiClient(node.url, http).login("approver")
            case_no = re.search(r'id="case-no">([^<]+)<', text).group(1)  # type: ignore[union-attr]
            listing = await approver.ok("GET", f"/api/v1/cases?q={case_no}")
            case_id = listing["cases"][0]["id"]
            case = await approver.ok("GET", f"/api/v1/cases/{case_id}")
            assert case["application"]["identity_verified"] is False
            refused = await approver.act(case_id, "accept", status=409)
            assert refused["error"] == "identity_not_verified"
    finally:
        await node.stop()
