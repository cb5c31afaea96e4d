"""视频办: how long a citizen waits for the things the queue promises, on a real node process.

    python -m bench.videocalls [--calls 10] [--out bench/results/videocalls.json]

What it does (docs/videocalls.md, "Figures"):

1. Makes a node (``init_node``, SQLite in a temp dir, ``[videocalls]`` open all week) with a
   helper account, and serves it as a real ``python -m node.cli run`` process.
2. For each of ``--calls`` calls, from this process: two citizens start a call (``POST
   /video/v1/calls``) and join its WebSocket; the one ahead leaves and the time until the
   second is told its new position is measured; a helper picks the second up, the time until
   the citizen's page hears ``picked`` is measured; the citizen (aiortc, pre-encoded 640×480
   VP8 at 20 fps and Opus) and the helper (aiortc, sending Opus) negotiate through the node, and
   the time from pick-up to the helper's first video frame is measured. The helper ends the
   call; the node's own ``connected_at - picked_at`` is read back from the figures API.
3. Prints medians and p90s and writes them with the raw samples to the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from bench import procstat
from bench.inspection import FPS, LoopTrack, encode_audio, encode_video, free_port, spawn_node
from node.accounts.service import create_user
from node.provisioning import init_node
from node.storage.database import Database
from node.videocalls.figures import percentile
from tests.support.nodes import wait_healthy

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-videocalls-pw"


async def make_node(tmp: Path) -> Any:
    config = await init_node(tmp / "node", region="370500", name="东营市", port=free_port())
    toml = config.dir / "tongban.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8")
        + '\n[videocalls]\nhours = ["mon-sun 00:00-24:00"]\nclient_calls_burst = 100\n',
        encoding="utf-8",
    )
    db = Database(config.database_url)
    try:
        await create_user(db, "helper", PASSWORD, "helper", "孙丽")
    finally:
        await db.dispose()
    return config


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=30)
        if message["type"] == kind:
            return dict(message)


async def start_call(http: aiohttp.ClientSession, url: str) -> tuple[dict[str, Any], Any]:
    async with http.post(f"{url}/video/v1/calls", json={"consent": False}) as resp:
        call = await resp.json()
        assert resp.status == 201, call
    ws = await http.ws_connect(f"{url.replace('http', 'ws', 1)}/video/v1/calls/{call['id']}/ws")
    await ws.send_json({"type": "join", "key": call["key"]})
    await until(ws, "joined")
    return call, ws


async def negotiate(ws: Any, pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
    answer = await until(ws, "answer")
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))


async def one_call(
    http: aiohttp.ClientSession, url: str, token: str, media: tuple[list[bytes], list[bytes]]
) -> dict[str, float]:
    video, audio = media
    _ahead, ahead_ws = await start_call(http, url)
    call, ws = await start_call(http, url)
    left = time.monotonic()
    await ahead_ws.close()
    moved = await until(ws, "queue")
    assert moved["position"] == 1, moved
    queue_update = time.monotonic() - left

    headers = {"Authorization": f"Bearer {token}"}
    picked_at = time.monotonic()
    async with http.post(f"{url}/video/v1/calls/{call['id']}/pick", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    await until(ws, "picked")
    told = time.monotonic() - picked_at

    citizen = RTCPeerConnection()
    citizen.addTransceiver(LoopTrack("video", video, FPS, 90_000), direction="sendrecv")
    citizen.addTransceiver(LoopTrack("audio", audio, 50, 48_000), direction="sendrecv")
    helper = RTCPeerConnection()
    helper.addTransceiver(LoopTrack("audio", audio, 50, 48_000), direction="sendrecv")
    helper.addTransceiver("video", direction="recvonly")
    first_frame: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    tasks: list[asyncio.Task[None]] = []

    @helper.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def first() -> None:
            await track.recv()
            if not first_frame.done():
                first_frame.set_result(time.monotonic())

        if track.kind == "video":
            tasks.append(asyncio.ensure_future(first()))

    staff_ws = await http.ws_connect(
        f"{url.replace('http', 'ws', 1)}/video/v1/calls/{call['id']}/ws"
    )
    await staff_ws.send_json({"type": "join", "auth": token})
    await until(staff_ws, "joined")
    await asyncio.gather(negotiate(ws, citizen), negotiate(staff_ws, helper))
    frame_at = await asyncio.wait_for(first_frame, timeout=30)
    async with http.post(f"{url}/video/v1/calls/{call['id']}/end", headers=headers) as resp:
        assert resp.status == 200
    for pc in (citizen, helper):
        await pc.close()
    for socket in (ws, staff_ws):
        await socket.close()
    return {
        "queue_update_s": queue_update,
        "picked_push_s": told,
        "pickup_to_first_frame_s": frame_at - picked_at,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-videocalls-"))
    config = await make_node(tmp)
    proc = spawn_node(config, tmp / "node.log")
    samples: list[dict[str, float]] = []
    result: dict[str, Any] = {"calls": args.calls}
    try:
        await wait_healthy(proc, config.url, "node", timeout=30)
        media = (encode_video(), encode_audio())
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{config.url}/api/v1/login", json={"username": "helper", "password": PASSWORD}
            ) as resp:
                token = (await resp.json())["token"]
            for _ in range(args.calls):
                samples.append(await one_call(http, config.url, token, media))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for key in ("queue_update_s", "picked_push_s", "pickup_to_first_frame_s"):
        values = [s[key] for s in samples]
        result[key] = {
            "p50": round(percentile(values, 0.5) or 0, 3),
            "p90": round(percentile(values, 0.9) or 0, 3),
            "max": round(max(values), 3),
        }
    result["samples"] = samples
    result["machine"] = procstat.machine_info(REPO)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "videocalls.json")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    for key in ("queue_update_s", "picked_push_s", "pickup_to_first_frame_s"):
        print(f"{key:26} {result[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
