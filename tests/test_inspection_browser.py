"""云端勘验 in real browsers: headless Chromium with a fake camera (a .y4m the test writes)
joins as the applicant on a phone-sized page; another page is the inspector's console. The
test takes snapshots, marks the checklist, ends and signs, then checks the recording, the
snapshots, the manifest and the partner's verified copy. A second test kills the applicant's
browser mid-call."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from playwright.async_api import Browser, Page, Playwright, async_playwright

from inspection.snapshots import quarters
from protocol.evidence import verify_manifest
from tests.support.api import ApiClient
from tests.support.browser import (
    ARGS,
    CHROMIUM,
    PHONE,
    assert_no_policy_violations,
    overflowing,
    sign_in,
    watch_policy,
)
from tests.support.inspections import InspectionCase, accepted_case, schedule, until
from tests.support.media import matches_quarters, write_y4m
from tests.support.nodes import RunningNode, free_port
from tests.support.waiting import wait_until

SITE = {"latitude": 27.0563, "longitude": 111.3046}


class OwnChromium:
    """A Chromium we start ourselves (so that we can SIGKILL it), driven over CDP."""

    def __init__(self, tmp: Path, name: str, y4m: Path) -> None:
        self.port = free_port()
        self.profile = tmp / f"profile-{name}"
        self.args = [
            CHROMIUM,
            "--headless=new",
            f"--remote-debugging-port={self.port}",
            f"--user-data-dir={self.profile}",
            *ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}",
            "about:blank",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"chromium-{name}.log"

    async def start(self, pw: Playwright) -> Browser:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        endpoint = f"http://127.0.0.1:{self.port}"

        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{endpoint}/json/version"):
                    return True
            except aiohttp.ClientError:
                return False

        await wait_until(ready, timeout=30, interval=0.2)
        return await pw.chromium.connect_over_cdp(endpoint)

    def kill(self) -> None:
        """SIGKILL the browser and its helpers (its own process group, started above)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _recording_facts(path: Path) -> dict[str, Any]:
    frames = matching = 0
    first = last = None
    sizes = set()
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames += 1
            t = float(frame.pts * frame.time_base)
            first = t if first is None else first
            last = t
            sizes.add((frame.width, frame.height))
            if frames % 10 == 1:
                matching += matches_quarters(quarters(frame), tol=25)
    return {
        "frames": frames,
        "duration": (last or 0) - (first or 0),
        "sampled": (frames + 9) // 10,
        "matching": matching,
        "sizes": sizes,
    }


async def _true(value: bool) -> bool:
    return value


async def _applicant_joins(page: Page, case: InspectionCase, shots: Path) -> None:
    await page.goto(case.schedule["join_url"])
    await page.screenshot(path=str(shots / "applicant-start.png"), full_page=True)
    await page.get_by_role("button", name="开始").click()
    await page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('已连接')"
        " || document.getElementById('status').textContent.includes('工作人员已接入')",
        timeout=30_000,
    )
    assert "token=" not in page.url  # the token leaves the address bar at once


async def _console(browser: Browser, node: RunningNode, case: InspectionCase) -> Page:
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await sign_in(page, node.url, "inspector")
    await page.goto(f"{node.url}/inspection/{case.session_id}/console")
    return page


async def _applicant_page(browser: Browser) -> Page:
    context = await browser.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        geolocation=SITE,
        permissions=["geolocation", "camera", "microphone"],
        locale="zh-CN",
    )
    return await context.new_page()


async def _video_playing(page: Page) -> None:
    await page.wait_for_function(
        "() => { const v = document.getElementById('remote');"
        " return v && v.videoWidth > 0 && v.currentTime > 1; }",
        timeout=30_000,
    )


async def test_inspection_in_real_browsers(regions: list[RunningNode], tmp_path: Path) -> None:
    hengyang, shaoyang = regions
    y4m = write_y4m(tmp_path / "site.y4m")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        approver = await ApiClient(shaoyang.url, http).login("approver")
        inspector = await ApiClient(shaoyang.url, http).login("inspector")
        case_no, handling_id, receiving_id = await accepted_case(clerk, approver)
        case = await schedule(approver, clerk, case_no, handling_id, receiving_id)

        own = OwnChromium(tmp_path, "both", y4m)
        async with async_playwright() as pw:
            browser = await own.start(pw)
            watch_policy(browser)  # every page below runs under the node's CSP
            try:
                # The window prints the invitation with the QR code.
                window_ctx = await browser.new_context()
                window = await window_ctx.new_page()
                await sign_in(window, hengyang.url, "clerk")
                await window.goto(f"{hengyang.url}/inspection/v1/cases/{receiving_id}/invitation")
                assert await window.locator(".qr svg").count() == 1
                await window.screenshot(path=str(shots / "invitation.png"), full_page=True)

                console = await _console(browser, shaoyang, case)
                applicant = await _applicant_page(browser)
                await _applicant_joins(applicant, case, shots)
                connected_at = time.monotonic()
                await _video_playing(console)
                await console.wait_for_function(
                    "() => document.getElementById('location').textContent.includes('27.05')",
                    timeout=30_000,
                )
                await applicant.screenshot(path=str(shots / "applicant-live.png"), full_page=True)
                assert await overflowing(applicant) == []  # nothing scrolls sideways on a phone

                # Snapshots, checklist, record: like an inspector would.
                for n in (1, 2):
                    await console.get_by_role("button", name="截图取证").click()
                    await console.wait_for_function(
                        f"() => document.querySelectorAll('#snapshots figure').length >= {n}",
                        timeout=30_000,
                    )
                points = console.locator(".checklist li")
                for index in range(await points.count()):
                    verdict = "fail" if index == 2 else "pass"
                    await points.nth(index).locator(f"input[value={verdict}]").check()
                await points.nth(2).locator(".note").fill("缺少水分测定仪")
                await points.nth(2).locator(".note").dispatch_event("change")
                await console.wait_for_function(
                    "() => document.querySelectorAll('.checklist li.saved').length === "
                    "document.querySelectorAll('.checklist li').length",
                    timeout=30_000,
                )
                await console.select_option("#result", "conditional")
                await console.fill("#findings", "基本符合，检验室需补齐设备")
                await console.fill("#record", "申请人按要点逐项展示现场，检验室缺少水分测定仪。")
                await asyncio.sleep(3)  # let the call run a little longer
                await console.screenshot(path=str(shots / "console-live.png"), full_page=True)
                await console.get_by_role("button", name="结束并签署").click()
                await console.wait_for_function(
                    "() => document.getElementById('end-result').textContent.includes('已签署')",
                    timeout=60_000,
                )
                call_length = time.monotonic() - connected_at
                await console.screenshot(path=str(shots / "console-signed.png"), full_page=True)
                await applicant.wait_for_function(
                    "() => document.getElementById('status').textContent.includes('已结束')",
                    timeout=30_000,
                )
                await applicant.screenshot(path=str(shots / "applicant-ended.png"), full_page=True)
                # The invitation, the console and the applicant's page ran without breaking
                # their Content-Security-Policy (no inline script, style or plugin).
                assert_no_policy_violations(browser)
            finally:
                with contextlib.suppress(Exception):
                    await browser.close()
                own.kill()

        got = await inspector.ok("GET", f"/inspection/v1/sessions/{case.session_id}/evidence")
        summary = got["evidence"]
        files = summary["files"]
        recordings = [f for f in files if f["kind"] == "recording"]
        snapshots = [f for f in files if f["kind"] == "snapshot"]
        assert len(recordings) == 1 and len(snapshots) == 2
        facts = await asyncio.to_thread(
            _recording_facts, shaoyang.fed.blobs.path(recordings[0]["sha256"])
        )
        # The recording covers the call (from the first key frame to the end) and its
        # pictures are the fake camera's.
        assert facts["frames"] >= 10
        assert call_length * 0.5 <= facts["duration"] <= call_length + 2
        # The stated duration is the recording's span (audio from the start, video from its
        # first key frame, which a busy machine may send seconds late): it covers the call and
        # the decoded video lies within it.
        stated = recordings[0]["duration_s"]
        assert call_length * 0.5 <= stated <= call_length + 2
        assert facts["duration"] <= stated + 1
        assert facts["matching"] >= facts["sampled"] * 0.8
        for shot in snapshots:
            path = shaoyang.fed.blobs.path(shot["sha256"])
            assert hashlib.sha256(path.read_bytes()).hexdigest() == shot["sha256"]
            with av.open(str(path)) as img:
                picture = next(img.decode(video=0))
            assert (picture.width, picture.height) in facts["sizes"]
            assert matches_quarters(quarters(picture), tol=25)
            assert shot["location"]["latitude"] == pytest.approx(SITE["latitude"])

        keys = shaoyang.fed.identity.keyset()
        manifest = verify_manifest(
            shaoyang.fed.blobs.path(summary["manifest"]).read_bytes(),
            issuer="430523",
            keys=lambda kid: k.public_key if (k := keys.get(kid)) else None,
        )
        assert [c["result"] for c in manifest["checklist"]] == [
            "pass",
            "pass",
            "fail",
            "pass",
            "pass",
            "pass",
        ]
        assert manifest["checklist"][2]["note"] == "缺少水分测定仪"
        assert manifest["record"]["inspector"]["username"] == "inspector"

        shown = await until(
            clerk, case_no, lambda c: (c["details"].get("inspection") or {}).get("evidence")
        )
        evidence = shown["details"]["inspection"]["evidence"]
        assert evidence["verified"]["manifest"] == summary["manifest"]
        assert evidence["result"] == "conditional"


async def test_killing_the_applicants_browser_leaves_a_playable_recording(
    regions: list[RunningNode], tmp_path: Path
) -> None:
    hengyang, shaoyang = regions
    y4m = write_y4m(tmp_path / "site.y4m")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        approver = await ApiClient(shaoyang.url, http).login("approver")
        inspector = await ApiClient(shaoyang.url, http).login("inspector")
        case_no, handling_id, receiving_id = await accepted_case(clerk, approver)
        case = await schedule(approver, clerk, case_no, handling_id, receiving_id)
        phone = OwnChromium(tmp_path, "phone", y4m)
        desk = OwnChromium(tmp_path, "desk", y4m)
        base = f"/inspection/v1/sessions/{case.session_id}"
        async with async_playwright() as pw:
            phone_browser = await phone.start(pw)
            desk_browser = await desk.start(pw)
            watch_policy(phone_browser)
            watch_policy(desk_browser)
            try:
                console = await _console(desk_browser, shaoyang, case)
                applicant = await _applicant_page(phone_browser)
                await _applicant_joins(applicant, case, shots)
                await _video_playing(console)
                phone.kill()  # the phone is gone: no goodbye
                await console.wait_for_function(
                    "() => document.getElementById('status').textContent.includes('申请人已断开')",
                    timeout=20_000,
                )
                await console.screenshot(path=str(shots / "console-lost.png"), full_page=True)

                async def stored() -> bool:
                    got = await inspector.ok("GET", f"{base}/evidence")
                    return any(i["kind"] == "recording" for i in got["items"])

                await wait_until(stored, timeout=15)
                await console.select_option("#result", "aborted")
                await console.fill("#record", "申请人网络中断，勘验未完成。")
                await console.get_by_role("button", name="结束并签署").click()
                await console.wait_for_function(
                    "() => document.getElementById('end-result').textContent.includes('已签署')",
                    timeout=60_000,
                )
                assert_no_policy_violations(desk_browser)
                assert_no_policy_violations(phone_browser)
            finally:
                with contextlib.suppress(Exception):
                    await desk_browser.close()
                desk.kill()
                phone.kill()

        got = await inspector.ok("GET", f"{base}/evidence")
        assert got["status"] == "ended" and got["result"] == "aborted"
        recordings = [f for f in got["evidence"]["files"] if f["kind"] == "recording"]
        assert len(recordings) == 1
        facts = await asyncio.to_thread(
            _recording_facts, shaoyang.fed.blobs.path(recordings[0]["sha256"])
        )
        assert facts["frames"] >= 10 and facts["matching"] >= 1
        shown = await until(
            clerk, case_no, lambda c: (c["details"].get("inspection") or {}).get("evidence")
        )
        assert shown["details"]["inspection"]["evidence"]["result"] == "aborted"
