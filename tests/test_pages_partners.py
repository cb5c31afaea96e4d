"""Supervision at many partners (national scale): the partner lists come a page at a time,
problems first, and filter by province; nothing renders every partner at once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from node.federation.models import outbox
from node.federation.partners import Partner, load_partners, render_partners
from node.pages.link_health import STALE_AFTER, LinkHealth, link_health
from node.pages.paging import nav, paginate
from node.pages.supervision import LINKS_PAGE, link_order, province_choices
from node.provisioning import init_node
from protocol.keys import TrustedKey, key_id
from protocol.messages import example_body
from tests.support.browser import PHONE, chromium, output_dir, overflowing, sign_in
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, free_port
from tests.support.regions import provision
from tests.support.waiting import wait_until

BODY = example_body("case.progress")[0]
#: Fake partners by province prefix: 湖南 60, 山东 40, 广东 20 (unreachable URLs).
PROVINCE_COUNTS = {"43": 60, "37": 40, "44": 20}


def test_paginate_clamps_and_counts() -> None:
    rows = list(range(1, 121))
    first = paginate(rows, 1, 50)
    assert (first.rows[0], first.rows[-1], first.pages, first.total) == (1, 50, 3, 120)
    last = paginate(rows, 99, 50)
    assert (last.page, last.rows, last.first, last.last) == (3, list(range(101, 121)), 101, 120)
    assert paginate([], 5, 50).pages == 1 and paginate([], 5, 50).first == 0
    assert nav({"province": "43", "links_page": "2"}, "links_page", paginate(rows, 2, 50)) == {
        "prev": "?province=43",
        "next": "?province=43&links_page=3",
    }


def test_links_sort_problems_first_then_longest_wait() -> None:
    now = time.time()
    ok = LinkHealth("430100", "长沙市")
    retrying = LinkHealth("370100", "济南市", retrying=2, oldest_waiting_at=now - 60, depth=2)
    stale = LinkHealth("440100", "广州市", depth=1, oldest_waiting_at=now - STALE_AFTER - 60)
    dead = LinkHealth("110100", "北京市", dead_letters=1, recent_dead_letters=1)
    ordered = sorted([ok, retrying, dead, stale], key=lambda link: link_order(link, now))
    assert [link.region for link in ordered] == ["440100", "110100", "370100", "430100"]
    assert province_choices(["430100", "430200", "370100", "999999"]) == [
        ("37", "山东省", 1),
        ("43", "湖南省", 2),
    ]


def _fake_partners() -> list[Partner]:
    now = datetime.now(UTC)
    partners = []
    for prefix, count in PROVINCE_COUNTS.items():
        for index in range(count):
            region = f"{prefix}{index + 1:04d}"
            public = Ed25519PrivateKey.generate().public_key()
            key = TrustedKey(
                kid=key_id(region, public),
                region=region,
                public_key=public,
                not_before=now - timedelta(days=1),
                not_after=now + timedelta(days=365),
            )
            # Nothing listens there: every delivery to it fails and is retried.
            url = f"http://127.0.0.1:{free_port()}"
            partners.append(Partner(region, f"测试{region}", url, (key,)))
    return partners


async def test_supervision_pages_partner_lists_problems_first_by_province(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    config = await init_node(
        tmp_path / "430400",
        region="430400",
        name="衡阳市",
        port=free_port(),
        database_url=await databases.new_url("430400"),
        extra_toml="[federation]\ninitial_backoff = 0.05\nmax_backoff = 1.0\npoll_interval = 1.0\n",
    )
    fakes = _fake_partners()
    config.partners_file.write_text(render_partners(fakes), encoding="utf-8")
    assert len(load_partners(config.partners_file)) == sum(PROVINCE_COUNTS.values())
    await provision(config)
    node = await RunningNode(config).start()
    shots = output_dir("test_supervision_pages_partner_lists_problems_first_by_province")
    try:
        # Three links in trouble: two retrying (山东, 广东), one waiting for an hour (广东).
        for region in ("370007", "440003", "440011"):
            await node.send(region, "case.progress", f"XT-{region}", BODY)

        async def retried() -> bool:
            links = await _links(node)
            return all(links[r].retrying for r in ("370007", "440003", "440011"))

        await wait_until(retried, timeout=30)
        async with node.db.write() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.partner == "440011")
                .values(created_at=time.time() - 3600)
            )

        async with chromium() as browser:
            page = await (await browser.new_context(locale="zh-CN")).new_page()
            await sign_in(page, node.url, "supervisor")
            await page.goto(f"{node.url}/supervision")
            await page.screenshot(path=shots / "1-all-1280.png", full_page=True)
            rows = page.locator("#link-health tbody tr")
            assert await rows.count() == LINKS_PAGE
            regions = [await rows.nth(i).get_attribute("data-region") for i in range(3)]
            # The hour-long wait first, then the retrying ones, the longest waiting first.
            assert regions == ["440011", "370007", "440003"]
            assert "异常" in await rows.nth(0).inner_text()
            summary = await page.locator("#link-summary").inner_text()
            assert "异常 1" in summary and "重试中 2" in summary and "正常 117" in summary
            pager = await page.locator("#links-pager").inner_text()
            assert "共 120 个伙伴地区" in pager and "1/3" in pager

            # The last page holds the rest; nothing is listed twice.
            await page.locator("#links-pager a[rel=next]").click()
            await page.locator("#links-pager a[rel=next]").click()
            assert "3/3" in await page.locator("#links-pager").inner_text()
            assert await rows.count() == 120 - 2 * LINKS_PAGE

            # By province: 广东省's 20 links, its two in trouble first.
            await page.goto(f"{node.url}/supervision")
            await page.select_option("#province", "44")
            await page.get_by_role("button", name="筛选").click()
            await page.wait_for_url("**/supervision?province=44*")
            assert await rows.count() == 20
            listed = [await rows.nth(i).get_attribute("data-region") for i in range(20)]
            assert listed[:2] == ["440011", "440003"]
            assert all(r is not None and r.startswith("44") for r in listed)
            assert await page.locator("#links-pager a").count() == 0

            # By level: only the retrying ones, across provinces.
            await page.goto(f"{node.url}/supervision?level=warning")
            assert [
                await rows.nth(i).get_attribute("data-region") for i in range(await rows.count())
            ] == ["370007", "440003"]

            phone = await (await browser.new_context(viewport=PHONE, locale="zh-CN")).new_page()
            await sign_in(phone, node.url, "supervisor")
            await phone.goto(f"{node.url}/supervision")
            await phone.screenshot(path=shots / "2-all-390.png", full_page=True)
            assert await overflowing(phone) == []
    finally:
        await node.stop()


async def _links(node: RunningNode) -> dict[str, LinkHealth]:
    names = {code: p.name for code, p in node.fed.trust.partners.items()}
    async with node.db.read() as conn:
        return {link.region: link for link in await link_health(conn, names)}
