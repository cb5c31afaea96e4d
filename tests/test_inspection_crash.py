"""The handling node's process dies mid-call (SIGKILL): the recording written so far is still
playable, and after a restart the inspector ends the session with that recording in the
evidence, verified at the partner."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from inspection.media import probe
from node.catalog.partner_cache import refresh_partner_catalog
from tests.support.api import ApiClient
from tests.support.databases import DatabaseFactory
from tests.support.inspections import accepted_case, schedule, until
from tests.support.media import Client
from tests.support.nodes import NodeProcess, RunningNode, make_configs
from tests.support.regions import provision
from tests.support.waiting import wait_until


async def test_node_killed_mid_call_keeps_a_playable_recording(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    configs = await make_configs(tmp_path, databases, [("430400", "衡阳市"), ("430523", "邵阳县")])
    for config in configs:
        await provision(config)
    hengyang = await RunningNode(configs[0]).start()
    shaoyang = NodeProcess(configs[1], tmp_path)
    await shaoyang.start()
    try:
        await refresh_partner_catalog(
            hengyang.db, hengyang.fed.trust, hengyang.fed.client, "430523"
        )
        async with aiohttp.ClientSession() as http:
            clerk = await ApiClient(hengyang.url, http).login("clerk")
            approver = await ApiClient(shaoyang.config.url, http).login("approver")
            case_no, handling_id, receiving_id = await accepted_case(clerk, approver)
            case = await schedule(approver, clerk, case_no, handling_id, receiving_id)
            url = shaoyang.config.url.replace("http://", "ws://")
            applicant = Client(
                http,
                f"{url}/inspection/{case.session_id}/ws",
                {"type": "join", "token": case.token},
            )
            segment = shaoyang.config.dir / "inspections" / case.session_id / "recording-01.webm"
            try:
                assert (await applicant.open())["type"] == "joined"
                await applicant.connect()

                async def recorded() -> bool:
                    if not segment.exists():
                        return False
                    try:
                        found = await asyncio.to_thread(probe, segment)
                    except Exception:
                        return False
                    return found.video_frames >= 30

                await wait_until(recorded, timeout=30)
                shaoyang.kill()  # no cleanup, no trailer
            finally:
                await applicant.close()

            crashed = await asyncio.to_thread(probe, segment)
            assert crashed.video_frames >= 30 and crashed.width == 640

            await shaoyang.start()
            # The applicant comes back with the resume key from the first join: a new
            # segment; the crashed one is kept.
            again = Client(
                http,
                f"{url}/inspection/{case.session_id}/ws",
                {"type": "join", "resume": applicant.joined["resume"]},
            )
            try:
                assert (await again.open())["type"] == "joined"
                await again.connect()
                second = segment.with_name("recording-02.webm")

                async def recording_again() -> bool:
                    try:
                        return (await asyncio.to_thread(probe, second)).video_frames >= 15
                    except Exception:
                        return False

                await wait_until(recording_again, timeout=30)
            finally:
                await again.close()
            inspector = await ApiClient(shaoyang.config.url, http).login("inspector")
            summary = await inspector.ok(
                "POST",
                f"/inspection/v1/sessions/{case.session_id}/end",
                {"result": "aborted", "note": "办理地节点故障，勘验中断"},
            )
            recordings = {f["name"]: f for f in summary["files"] if f["kind"] == "recording"}
            assert set(recordings) == {"recording-01.webm", "recording-02.webm"}
            assert recordings["recording-01.webm"]["video_frames"] >= crashed.video_frames
            shown = await until(
                clerk, case_no, lambda c: (c["details"].get("inspection") or {}).get("evidence")
            )
            assert (
                shown["details"]["inspection"]["evidence"]["verified"]["manifest"]
                == (summary["manifest"])
            )
    finally:
        shaoyang.stop()
        await hengyang.stop()
