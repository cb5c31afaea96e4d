"""Playwright driving Debian's Chromium (/usr/bin/chromium): its own browser download cannot
work on these machines (docs/pages.md, "Browser tests"). Screenshots go to the test's output
folder.

Every page opened through ``chromium()`` is watched for Content-Security-Policy violations (the
``securitypolicyviolation`` event and Chromium's own console message); a test whose pages
caused one fails when its browser closes, and ``assert_no_policy_violations`` checks at any
point of a flow."""

from __future__ import annotations

import asyncio
import os
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from tests.support.api import PASSWORD

CHROMIUM = os.environ.get("TONGBAN_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where tests keep what they want a person to look at afterwards (screenshots).
OUTPUT = Path(
    os.environ.get("TONGBAN_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")
)
#: Chromium's headless capture fails now and then with "Unable to capture screenshot" (no
#: compositor frame to give; seen under load, once in a CI run of the whole suite). A
#: screenshot is for a person to look at afterwards, or a QR code to decode: on that error
#: only, it is taken again, up to this many times in all.
SCREENSHOT_TRIES = 3
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1366, "height": 900}


#: Runs in every page before its own scripts (Playwright's init scripts are not subject to the
#: page's CSP) and reports each violation on the console, where the watch collects it.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.effectiveDirective} blocked ${e.blockedURI || "(inline)"}`
    + ` at ${e.sourceFile}:${e.lineNumber} on ${location.pathname}`);
}, true);
"""
_VIOLATIONS: weakref.WeakKeyDictionary[Browser, list[str]] = weakref.WeakKeyDictionary()


def _is_violation(message: ConsoleMessage) -> bool:
    text = message.text
    return text.startswith("CSP violation:") or "Content Security Policy" in text


def watch_policy(browser: Browser) -> list[str]:
    """Collect the CSP violations of every context and page ``browser`` opens."""
    seen: list[str] = []
    _VIOLATIONS[browser] = seen

    def on_console(message: ConsoleMessage) -> None:
        if _is_violation(message):
            seen.append(message.text)

    open_context, open_page = browser.new_context, browser.new_page

    async def new_context(**kwargs: Any) -> BrowserContext:
        context = await open_context(**kwargs)
        await context.add_init_script(REPORT_VIOLATIONS)
        context.on("console", on_console)
        return context

    async def new_page(**kwargs: Any) -> Page:
        page = await open_page(**kwargs)
        await page.add_init_script(REPORT_VIOLATIONS)
        page.on("console", on_console)
        return page

    browser.new_context = new_context  # type: ignore[method-assign]
    browser.new_page = new_page  # type: ignore[method-assign]
    return seen


def policy_violations(browser: Browser) -> list[str]:
    """The CSP violations the pages of ``browser`` caused so far (a live list)."""
    return _VIOLATIONS[browser]


def assert_no_policy_violations(browser: Browser) -> None:
    seen = policy_violations(browser)
    assert not seen, "Content-Security-Policy violations:\n" + "\n".join(seen)


@asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    """Chromium for one test; fails the test if a page violated its CSP (checked when the
    browser closes after the test's body succeeded)."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])
        seen = watch_policy(browser)
        try:
            yield browser
        finally:
            await browser.close()
        assert not seen, "Content-Security-Policy violations:\n" + "\n".join(seen)


def _retrying(take: Callable[..., Awaitable[bytes]]) -> Callable[..., Awaitable[bytes]]:
    """``take`` (a screenshot method), taken again when Chromium refuses the capture."""

    async def screenshot(self: Any, *args: Any, **kwargs: Any) -> bytes:
        for attempt in range(1, SCREENSHOT_TRIES + 1):
            try:
                return await take(self, *args, **kwargs)
            except PlaywrightError as error:
                if attempt == SCREENSHOT_TRIES or "Unable to capture screenshot" not in str(
                    error.message
                ):
                    raise
                await asyncio.sleep(0.25 * attempt)
        raise AssertionError("not reached")

    return screenshot


# Every page's and element's screenshots, whoever opened the page (a context, a popup).
Page.screenshot = _retrying(Page.screenshot)  # type: ignore[method-assign,assignment]
Locator.screenshot = _retrying(Locator.screenshot)  # type: ignore[method-assign,assignment]


def output_dir(test_name: str) -> Path:
    """A clean folder for one test's screenshots: test-output/<test name>/."""
    folder = OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink(missing_ok=True)
    return folder


async def sign_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Use the login form like a person; waits for the role's start page."""
    await page.goto(f"{base_url}/login")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(password)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


async def overflowing(page: Page) -> list[str]:
    """Elements wider than the viewport (what makes a phone scroll sideways), as short
    descriptions; scroll containers (.table-wrap) may hold wide content."""
    return await page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const bad = [];
          if (document.documentElement.scrollWidth > width + 1) bad.push('document ' + document.documentElement.scrollWidth + 'px');
          for (const el of document.querySelectorAll('body *')) {
            if (el.closest('.table-wrap')) continue;
            const r = el.getBoundingClientRect();
            if (r.width > 0 && r.right > width + 1 && getComputedStyle(el).position !== 'fixed') {
              bad.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '') + ' right=' + Math.round(r.right));
            }
          }
          return bad.slice(0, 20);
        }"""
    )
