"""视频办 in real browsers: Chromium with a fake camera on both sides (a .y4m the test writes).
The citizen (390 px) starts a call from /video and waits in the queue; the clerk (1280 px)
opts in, picks the call up, and both see and hear each other through the node; the clerk
takes a photo at the resolution the camera sends, books a slot at the window and opens a
window application with the photo attached; the citizen rates the call. A second citizen
closes the page while waiting and leaves the queue after the grace; a third loses its network
while waiting and in the call, and comes back; a fourth reloads the page while waiting and in
the call, and comes back. Outside opening hours the citizen leaves a
phone and a helper takes the callback. The time from pick-up to the clerk's
first frame is printed (bench figures are not asserted)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import av
import pytest
from playwright.async_api import Browser, Page
from sqlalchemy import select

from inspection.models import inspection_items
from inspection.snapshots import quarters
from node.appkeys import VIDEO_DESK
from node.clock import CHINA
from node.videocalls.models import video_calls
from tests.support.api import ApiClient
from tests.support.browser import (
    assert_no_policy_violations,
    chromium,
    output_dir,
    overflowing,
    sign_in,
)
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.media import matches_quarters, write_y4m
from tests.support.netproxy import CuttableProxy
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for
from tests.support.videocalls import ALWAYS, not_today, video_node
from tests.support.waiting import wait_until

ITEM = "370500-DJ-0001"
CITIZEN = {"width": 390, "height": 844}
DESK = {"width": 1280, "height": 900}
FRAMES = (
    "() => { const v = document.getElementById('remote');"
    " return v && v.videoWidth > 0 && v.currentTime > 1"
    " && v.getVideoPlaybackQuality().totalVideoFrames > 10"
    " && v.srcObject && v.srcObject.getAudioTracks().length > 0; }"
)


@pytest.fixture
async def node(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[RunningNode]:
    running = await video_node(tmp_path, databases, ALWAYS)
    yield running
    await running.stop()


async def _calls(node: RunningNode) -> list[dict[str, object]]:
    async with node.db.read() as conn:
        rows = (await conn.execute(select(video_calls).order_by(video_calls.c.created_at))).all()
    return [dict(r._mapping) for r in rows]


@asynccontextmanager
async def _cameras(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium whose pages get a fake camera (a .y4m written here) without being asked."""
    y4m = write_y4m(tmp_path / "camera.y4m")
    async with chromium(
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
    ) as browser:
        yield browser


async def _phone(browser: Browser) -> Page:
    """A citizen's phone (390 px) that may use the camera and microphone."""
    context = await browser.new_context(
        viewport=CITIZEN, is_mobile=True, permissions=["camera", "microphone"]
    )
    return await context.new_page()


async def _ask(page: Page, url: str, *, consent: bool) -> None:
    await page.goto(f"{url}/video?item={ITEM}")
    await page.fill("#topic", "企业开办需要哪些材料")
    await page.fill("#phone", "13905460002")
    if consent:
        await page.check("#consent")
    await page.get_by_role("button", name="开始视频咨询").click()
    await page.wait_for_function(
        "() => !document.getElementById('wait').classList.contains('hidden')", timeout=30_000
    )


async def _more_frames(page: Page) -> None:
    """The page's remote video goes on: more than 10 frames more than now."""
    frames = await page.evaluate(
        "() => document.getElementById('remote').getVideoPlaybackQuality().totalVideoFrames"
    )
    await page.wait_for_function(
        "(n) => document.getElementById('remote').getVideoPlaybackQuality()"
        ".totalVideoFrames > n + 10",
        arg=frames,
        timeout=30_000,
    )


async def _clerk_answers(clerk: Page, url: str) -> None:
    """A clerk signs in, opts in at the desk and answers the one waiting call."""
    await sign_in(clerk, url, "clerk")
    await clerk.goto(f"{url}/video/desk")
    await clerk.get_by_role("button", name="参与视频接听").click()
    await clerk.wait_for_selector("#queue tbody tr button", timeout=30_000)
    await clerk.get_by_role("button", name="接听", exact=True).click()
    await clerk.wait_for_url("**/console", timeout=30_000)


async def _clerk_ends_the_call(clerk: Page, citizen: Page) -> None:
    await clerk.get_by_role("button", name="结束通话").click()
    await citizen.wait_for_function(
        "() => !document.getElementById('done').classList.contains('hidden')",
        timeout=30_000,
    )


async def test_a_citizen_calls_the_hall(node: RunningNode, tmp_path: Path) -> None:
    shots = output_dir("test_a_citizen_calls_the_hall")
    async with _cameras(tmp_path) as browser:
        phone_ctx = await browser.new_context(
            viewport=CITIZEN,
            is_mobile=True,
            has_touch=True,
            locale="zh-CN",
            permissions=["camera", "microphone"],
        )
        citizen = await phone_ctx.new_page()
        desk_ctx = await browser.new_context(viewport=DESK, permissions=["camera", "microphone"])
        clerk = await desk_ctx.new_page()

        # The query page leads to 视频咨询.
        await citizen.goto(f"{node.url}/query")
        assert await citizen.locator("a#video-link").get_attribute("href") == "/video"

        await _ask(citizen, node.url, consent=True)
        assert await citizen.locator("#position").text_content() == "1"
        assert "分钟" in (await citizen.locator("#estimate").text_content() or "")
        await citizen.screenshot(path=str(shots / "citizen-waiting.png"), full_page=True)
        assert await overflowing(citizen) == []

        # The clerk opts in, sees the call and answers it.
        await sign_in(clerk, node.url, "clerk")
        await clerk.goto(f"{node.url}/video/desk")
        # Not yet opted in: the call is listed, with no 接听 to press.
        await clerk.wait_for_selector("#queue tbody tr", timeout=30_000)
        assert "参与视频接听后可接听" in (
            await clerk.locator("#queue tbody tr").first.text_content() or ""
        )
        assert await clerk.locator("#queue tbody tr button").count() == 0
        await clerk.get_by_role("button", name="参与视频接听").click()
        await clerk.wait_for_selector("#queue tbody tr button", timeout=30_000)
        assert await clerk.locator("#duty-state").text_content() == "您已参与视频接听。"
        assert await clerk.locator("#duty").text_content() == "退出视频接听"
        await clerk.screenshot(path=str(shots / "desk-queue.png"), full_page=True)
        assert "企业开办需要哪些材料" in (
            await clerk.locator("#queue tbody tr").first.text_content() or ""
        )
        await clerk.get_by_role("button", name="接听", exact=True).click()
        await clerk.wait_for_url("**/console", timeout=30_000)

        # Both see and hear each other (frames decoded on both sides, audio tracks there).
        await clerk.wait_for_function(FRAMES, timeout=60_000)
        await citizen.wait_for_function(FRAMES, timeout=60_000)
        await citizen.screenshot(path=str(shots / "citizen-in-call.png"), full_page=True)
        assert await overflowing(citizen) == []

        # A photo of the document, at the resolution the camera sends.
        await clerk.get_by_role("button", name="拍照（原始分辨率）").click()
        await clerk.wait_for_selector("#snapshots figure", timeout=30_000)
        sent = await citizen.evaluate(
            "() => { const s = document.getElementById('self').srcObject.getVideoTracks()[0]"
            ".getSettings(); return [s.width, s.height]; }"
        )

        # 预约 at the window: shown to the citizen at once.
        slot = (datetime.now(CHINA) + timedelta(days=2)).strftime("%Y-%m-%dT09:30")
        await clerk.fill("#appointment-at", slot)
        await clerk.fill("#appointment-note", "企业开办窗口")
        await clerk.get_by_role("button", name="预约", exact=True).click()
        await citizen.wait_for_function(
            "() => document.getElementById('appointment').textContent.includes('09:30')",
            timeout=30_000,
        )

        # 视频收件: the window's form opens with the photo as an uploaded file.
        async with desk_ctx.expect_page() as opened:
            await clerk.get_by_role("button", name="以截图发起收件").click()
        window = await opened.value
        await window.wait_for_selector("ul[data-uploads] li.upload", timeout=30_000)
        upload_text = await window.locator("ul[data-uploads] li.upload").first.text_content()
        assert "截图-001.jpg" in (upload_text or "") and "已上传" in (upload_text or "")
        assigned = await window.locator("ul[data-uploads] li.upload select").first.input_value()
        assert assigned == "M01"
        await window.screenshot(path=str(shots / "window-with-snapshot.png"), full_page=True)
        await clerk.screenshot(path=str(shots / "console.png"), full_page=True)

        await clerk.get_by_role("button", name="结束通话").click()
        await citizen.wait_for_function(
            "() => !document.getElementById('done').classList.contains('hidden')", timeout=30_000
        )
        assert "09:30" in (await citizen.locator("#done-appointment").text_content() or "")
        await citizen.check('#rate-form input[value="5"]')
        await citizen.get_by_role("button", name="提交评价").click()
        await citizen.wait_for_function(
            "() => document.getElementById('rate-result').textContent.includes('感谢')",
            timeout=30_000,
        )
        await citizen.screenshot(path=str(shots / "citizen-rated.png"), full_page=True)
        assert_no_policy_violations(browser)

    [call] = await _calls(node)
    assert call["status"] == "ended" and call["consent"] is True
    assert call["rating_level"] == 5 and call["rating_channel"] == "video"
    assert call["appointment_at"] == slot and call["application_item"] == ITEM
    assert call["connected_at"] is not None
    first_frame = float(call["connected_at"]) - float(call["picked_at"])  # type: ignore[arg-type]
    print(f"\npick-up to the clerk's first frame: {first_frame:.2f} s")
    async with node.db.read() as conn:
        items = (
            await conn.execute(
                select(inspection_items).where(inspection_items.c.session_id == call["id"])
            )
        ).all()
    [shot] = [i for i in items if i.kind == "snapshot"]
    data = json.loads(shot.data)
    assert [data["width"], data["height"]] == sent  # full resolution, as it arrived
    with av.open(str(node.fed.blobs.path(shot.sha256))) as img:
        picture = next(img.decode(video=0))
    assert (picture.width, picture.height) == tuple(sent)
    assert matches_quarters(quarters(picture), tol=25)
    # Consent given: the call was recorded.
    assert [i.kind for i in items].count("recording") == 1

    # The photo is a material of a real application (the case domain takes the upload).
    async with aiohttp.ClientSession() as http:
        clerk_api = await ApiClient(node.url, http).login("clerk")
        item = await clerk_api.ok("GET", f"/api/v1/catalog/{ITEM}")
        materials = await materials_for(clerk_api, item)
        for material in materials:
            if material["code"] == "M01":
                material.update(status="provided", blob=shot.sha256)
        created = await clerk_api.ok(
            "POST",
            "/api/v1/cases",
            {
                "item_code": ITEM,
                "mode": "online",
                "applicant": {
                    "kind": "person",
                    "name": "张伟",
                    "id_type": "resident_id",
                    "id_number": "11010519491231002X",
                    "phone": "13905460002",
                },
                "form": form_for(item),
                "materials": materials,
                "identity_verified": True,
                "delivery": {"method": "window", "address": None},
            },
            status=201,
        )
        case = await clerk_api.ok("GET", f"/api/v1/cases/{created['case']['id']}")
        provided = {m["code"]: m.get("blob") for m in case["application"]["materials"]}
        assert provided["M01"] == shot.sha256


async def test_a_citizen_who_closes_the_page_leaves_the_queue(
    node: RunningNode, tmp_path: Path
) -> None:
    """A page closed goes away as a reloaded one does (the browser's close frame says "going
    away"): the place is kept for the grace, the desk shows the caller as not connected, and
    then the call has left (connection_lost)."""
    # Long enough for the desk (refreshed every 2 s) to show the caller as not connected.
    node.app[VIDEO_DESK].rejoin_within = 10
    async with _cameras(tmp_path) as browser:
        citizen = await _phone(browser)
        desk_ctx = await browser.new_context(viewport=DESK)
        helper = await desk_ctx.new_page()
        await sign_in(helper, node.url, "helper")
        await helper.goto(f"{node.url}/video/desk")
        await _ask(citizen, node.url, consent=False)
        await helper.wait_for_selector("#queue tbody tr", timeout=30_000)
        assert "暂未连接" not in await helper.locator("#queue tbody tr").inner_text()
        await citizen.close()
        await helper.wait_for_selector("#queue tbody tr:has-text('暂未连接')", timeout=10_000)
        await helper.wait_for_function(
            "() => document.querySelectorAll('#queue tbody tr').length === 0", timeout=30_000
        )

    async def left() -> bool:
        return [(c["status"], c["end_reason"]) for c in await _calls(node)] == [
            ("left", "connection_lost")
        ]

    await wait_until(left)


async def test_a_citizen_who_reloads_the_page_comes_back_to_the_call(
    node: RunningNode, tmp_path: Path
) -> None:
    """The page keeps the call's id and key in the tab (sessionStorage): reloaded while
    waiting it joins again at its place, with the camera opened again; reloaded in the call
    it offers again and both see each other; after the call a reload shows the form."""
    desk = node.app[VIDEO_DESK]
    async with _cameras(tmp_path) as browser:
        citizen = await _phone(browser)
        desk_ctx = await browser.new_context(viewport=DESK, permissions=["camera", "microphone"])
        clerk = await desk_ctx.new_page()
        await _ask(citizen, node.url, consent=True)
        [call] = await _calls(node)
        call_id = str(call["id"])

        async def joined_anew(before: object) -> bool:
            now = desk.citizens.get(call_id)
            return now is not None and now is not before and call_id not in desk.away

        async def joined() -> bool:
            return call_id in desk.citizens

        await wait_until(joined, timeout=30)
        before = desk.citizens[call_id]
        await citizen.reload()
        await citizen.wait_for_function(
            "() => !document.getElementById('wait').classList.contains('hidden')",
            timeout=30_000,
        )
        await wait_until(lambda: joined_anew(before), timeout=30)
        assert await citizen.locator("#position").text_content() == "1"
        assert await citizen.locator("#ask").is_hidden()
        assert "将被录像" in (await citizen.locator("#recording-note").text_content() or "")
        assert list(desk.queue) == [call_id]
        assert [c["status"] for c in await _calls(node)] == ["waiting"]

        await _clerk_answers(clerk, node.url)
        await citizen.wait_for_function(FRAMES, timeout=60_000)

        # In the call: the reloaded page offers again; the clerk's page keeps its call.
        before = desk.citizens[call_id]
        await citizen.reload()
        await wait_until(lambda: joined_anew(before), timeout=30)
        await citizen.wait_for_function(FRAMES, timeout=60_000)
        await _more_frames(clerk)
        assert [c["status"] for c in await _calls(node)] == ["active"]
        await _clerk_ends_the_call(clerk, citizen)
        # Over: nothing kept, a reload shows the form.
        await citizen.reload()
        await citizen.wait_for_selector("#ask-form", state="visible", timeout=30_000)
        assert await citizen.locator("#wait").is_hidden()
        assert await citizen.evaluate("() => sessionStorage.getItem('tongban.videocall')") is None
        assert_no_policy_violations(browser)
    [ended] = await _calls(node)
    assert ended["status"] == "ended"


async def test_a_citizen_whose_network_drops_comes_back(node: RunningNode, tmp_path: Path) -> None:
    """The citizen's connection to the node is cut (both ends reset, no close frame) while
    waiting and again in the call: the page joins again with the call's key, keeps its place,
    and the call goes on (its media do not pass through the cut connection)."""
    desk = node.app[VIDEO_DESK]
    proxy = await CuttableProxy(node.config.port).start()
    try:
        async with _cameras(tmp_path) as browser:
            citizen = await _phone(browser)
            desk_ctx = await browser.new_context(
                viewport=DESK, permissions=["camera", "microphone"]
            )
            clerk = await desk_ctx.new_page()
            await _ask(citizen, proxy.url, consent=False)
            [call] = await _calls(node)
            call_id = str(call["id"])

            def joined_again(before: object) -> Callable[[], Awaitable[bool]]:
                """The page's socket is a new one (it joined again) and nothing is away."""

                async def check() -> bool:
                    now = desk.citizens.get(call_id)
                    return now is not None and now is not before and call_id not in desk.away

                return check

            async def joined() -> bool:
                return call_id in desk.citizens

            await wait_until(joined, timeout=30)
            # Waiting: the network goes; the place is kept and the page comes back.
            socket_before = desk.citizens[call_id]
            proxy.cut()
            await citizen.wait_for_function(
                "() => !document.getElementById('reconnecting').classList.contains('hidden')",
                timeout=10_000,
            )
            await wait_until(joined_again(socket_before), timeout=30)
            await citizen.wait_for_function(
                "() => document.getElementById('reconnecting').classList.contains('hidden')",
                timeout=10_000,
            )
            assert await citizen.locator("#position").text_content() == "1"
            assert list(desk.queue) == [call_id]

            # The call: both see each other; the network goes again; the call goes on.
            await _clerk_answers(clerk, node.url)
            await clerk.wait_for_function(FRAMES, timeout=60_000)
            await citizen.wait_for_function(FRAMES, timeout=60_000)
            socket_before = desk.citizens[call_id]
            proxy.cut()
            await wait_until(joined_again(socket_before), timeout=30)
            await citizen.wait_for_function(
                "() => document.getElementById('status').textContent.startsWith('已接通')",
                timeout=30_000,
            )
            await _more_frames(citizen)
            assert [c["status"] for c in await _calls(node)] == ["active"]
            await _clerk_ends_the_call(clerk, citizen)
            assert_no_policy_violations(browser)
    finally:
        await proxy.stop()
    [ended] = await _calls(node)
    assert ended["status"] == "ended"


async def test_outside_opening_hours_the_citizen_leaves_a_phone_and_a_helper_calls_back(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    closed = await video_node(tmp_path, databases, not_today(), region="430400")
    try:
        async with chromium() as browser:
            phone_ctx = await browser.new_context(viewport=CITIZEN, is_mobile=True)
            citizen = await phone_ctx.new_page()
            await citizen.goto(f"{closed.url}/video")
            assert await citizen.locator("#ask-form").count() == 0
            assert "不在视频办服务时间" in (await citizen.locator("#closed").text_content() or "")
            await citizen.fill("#cb-phone", "12")
            await citizen.get_by_role("button", name="提交回电请求").click()
            await citizen.wait_for_function(
                "() => document.getElementById('callback-result').textContent.includes('手机号码')",
                timeout=30_000,
            )
            await citizen.fill("#cb-phone", "13905460003")
            await citizen.fill("#cb-topic", "社保转移")
            await citizen.get_by_role("button", name="提交回电请求").click()
            await citizen.wait_for_function(
                "() => document.getElementById('callback-result').textContent.includes('已收到')",
                timeout=30_000,
            )
            assert await overflowing(citizen) == []
            desk_ctx = await browser.new_context(viewport=DESK)
            helper = await desk_ctx.new_page()
            await sign_in(helper, closed.url, "helper")
            assert helper.url.endswith("/video/desk")  # a helper starts at the desk
            await helper.get_by_role("button", name="回电 139****0003").click()
            await helper.wait_for_function(
                "() => document.getElementById('callbacks').textContent.includes('13905460003')",
                timeout=30_000,
            )
    finally:
        await closed.stop()
