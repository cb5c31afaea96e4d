"""Playwright driving Debian's Chromium (/usr/bin/chromium): its own browser download cannot
work on these machines (docs/pages.md, "Browser tests"). Screenshots go to the test's output folder."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

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
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1366, "height": 900}


@asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


def output_dir(test_name: str) -> Path:
    """A clean folder for one test's screenshots: test-output/<test name>/."""
    folder = OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
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
