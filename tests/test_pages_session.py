"""Staff sign-in for the pages: the session cookie, CSRF on the API, roles, and the login form
in a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from tests.support.api import PASSWORD, form_login
from tests.support.browser import chromium, output_dir, sign_in
from tests.support.databases import DatabaseFactory
from tests.support.regions import start_regions


async def _form_login(
    session: aiohttp.ClientSession, url: str, username: str, next_: str = ""
) -> aiohttp.ClientResponse:
    return await form_login(session, url, username, next_=next_)


async def test_cookie_session_csrf_and_roles(tmp_path: Path, databases: DatabaseFactory) -> None:
    (node,) = await start_regions(tmp_path, databases, [("430400", "衡阳市")])
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            # Not signed in: pages send people to the login form, the API answers 401.
            async with http.get(f"{node.url}/", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/login"
            async with http.get(f"{node.url}/api/v1/me") as r:
                assert r.status == 401

            async with await form_login(http, node.url, "clerk", "wrong-password") as r:
                assert r.status == 401
                assert "用户名或密码不正确" in await r.text()
                assert "tongban_session_430400" not in r.cookies

            async with await _form_login(http, node.url, "clerk") as r:
                assert r.status == 302 and r.headers["Location"] == "/window"
                cookie = r.cookies["tongban_session_430400"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict"

            # The API accepts the cookie for reading ...
            async with http.get(f"{node.url}/api/v1/me") as r:
                assert r.status == 200 and (await r.json())["username"] == "clerk"
            # ... but not for a change without the page's CSRF token.
            async with http.post(f"{node.url}/api/v1/token/refresh") as r:
                assert r.status == 403 and (await r.json())["error"] == "csrf_failed"
            async with http.post(
                f"{node.url}/api/v1/token/refresh", headers={"X-CSRF-Token": "0" * 40}
            ) as r:
                assert r.status == 403

            # Signing out revokes the token itself, not only the browser's cookie.
            token = cookie.value
            async with http.get(f"{node.url}/window") as r:
                page = await r.text()
            csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
            assert csrf is not None
            async with http.post(
                f"{node.url}/logout", data={"csrf": csrf.group(1)}, allow_redirects=False
            ) as r:
                assert r.status == 302 and r.headers["Location"] == "/login"
            bearer = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{node.url}/api/v1/me", headers=bearer) as r:
                assert r.status == 401 and (await r.json())["error"] == "unauthorized"
            async with await _form_login(http, node.url, "clerk") as r:
                assert r.status == 302

            # A login never sends anyone off the node.
            async with await form_login(http, node.url, "clerk", next_="//evil.example/") as r:
                assert r.headers["Location"] == "/window"

            # Unknown page: an HTML 404 for a browser, JSON for a program.
            async with http.get(f"{node.url}/no-such-page", headers={"Accept": "text/html"}) as r:
                assert r.status == 404 and "页面不存在" in await r.text()
            async with http.get(f"{node.url}/api/v1/no-such") as r:
                assert r.status == 404 and (await r.json())["error"]
    finally:
        await node.stop()


async def test_the_login_form_needs_its_csrf_token(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    """A form on another site that posts the attacker's username and password would sign the
    victim in as the attacker: the login form carries a token tied to a cookie of its own."""
    (node,) = await start_regions(tmp_path, databases, [("430400", "衡阳市")])
    credentials = {"username": "clerk", "password": PASSWORD, "next": ""}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as victim:
            # The cross-site form: no cookie of the login form, no token.
            async with victim.post(
                f"{node.url}/login", data=credentials, allow_redirects=False
            ) as r:
                assert r.status == 403
                page = await r.text()
                assert 'data-error="csrf_failed"' in page and "请重新登录" in page
                assert "tongban_session_430400" not in r.cookies
            async with victim.get(f"{node.url}/api/v1/me") as r:
                assert r.status == 401
            # The attacker's own token (from their own visit) with the victim's cookie.
            async with (
                aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other,
                other.get(f"{node.url}/login") as r,
            ):
                theirs = re.search(r'name="csrf" value="([^"]+)"', await r.text())
            assert theirs is not None
            async with victim.get(f"{node.url}/login") as r:
                cookie = r.cookies["tongban_login_430400"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
            for token in (theirs.group(1), "", "0" * 64):
                async with victim.post(
                    f"{node.url}/login",
                    data={**credentials, "csrf": token},
                    allow_redirects=False,
                ) as r:
                    assert r.status == 403, token
                    assert "tongban_session_430400" not in r.cookies
            # The form as the node served it works (the refusal page served a fresh one).
            async with await form_login(victim, node.url, "clerk") as r:
                assert r.status == 302 and "tongban_session_430400" in r.cookies
    finally:
        await node.stop()


UNSAFE_NEXT = [
    "/\t/evil.example/",  # aiohttp drops the TAB when it writes Location: //evil.example/
    "/\n/evil.example/",
    "/\r\n/evil.example/",
    "/ /evil.example/",
    "/\u3000/evil.example/",
    "/\u200b/evil.example/",
    "\t//evil.example/",
    " //evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\/evil.example/",
    "/%09/evil.example/",
    "/%5Cevil.example/",
    "/%2F/evil.example/",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil.example",
    "/../evil.example",
]


async def test_login_never_redirects_off_the_node(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    (node,) = await start_regions(tmp_path, databases, [("430400", "衡阳市")])
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for target in UNSAFE_NEXT:
                async with await _form_login(http, node.url, "clerk", target) as r:
                    assert r.status == 302, target
                    assert r.headers["Location"] == "/window", target
            # The form does not carry an unsafe target along either.
            async with http.get(f"{node.url}/login", params={"next": "/\t/evil.example/"}) as r:
                assert 'name="next" value=""' in await r.text()
            # A path on this node is kept.
            async with await _form_login(http, node.url, "clerk", "/window/cases?page=2") as r:
                assert r.headers["Location"] == "/window/cases?page=2"
    finally:
        await node.stop()


async def test_login_form_in_a_browser(tmp_path: Path, databases: DatabaseFactory) -> None:
    (node,) = await start_regions(tmp_path, databases, [("430400", "衡阳市")])
    shots = output_dir("test_login_form_in_a_browser")
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{node.url}/login")
            await page.get_by_label("用户名").fill("approver")
            await page.get_by_label("密码").fill("not-the-password")
            await page.get_by_role("button", name="登录").click()
            assert "用户名或密码不正确" in await page.locator("#login-error").inner_text()
            await page.screenshot(path=shots / "login-refused.png", full_page=True)

            await sign_in(page, node.url, "approver")
            assert "李明 · 审批人员" in await page.locator(".who").inner_text()
            # Signing out ends the session: the API no longer knows the browser.
            await page.get_by_role("button", name="退出").click()
            await page.wait_for_url(f"{node.url}/login")
            answer = await page.evaluate("fetch('/api/v1/me').then(r => r.status)")
            assert answer == 401
    finally:
        await node.stop()
