"""Video inspection sessions: what a live session costs the node.

    python -m bench.inspection [--sessions 4] [--seconds 30] [--no-inspector]
                               [--profile [--profile-rate 200]]
                               [--loop asyncio|uvloop]
                               [--out bench/results/inspection.json]

What it does (see docs/inspection.md, "Cost"):

1. Makes a node (``init_node``, SQLite in a temp dir) with an inspector account and K inspection
   sessions (rows written straight into ``inspection_sessions``: media needs no case), and
   serves it as a real ``python -m node.cli run`` process.
2. Opens K sessions from this process with aiortc clients, like the pages do over the
   signalling WebSocket: an applicant sending synthetic 640×480 VP8 video (20 fps, ~600 kbit/s,
   moving content) and Opus audio, and (unless ``--no-inspector``) an inspector receiving the
   relayed video and audio and sending audio. The clients send pre-encoded packets, so the
   client side costs little besides DTLS/SRTP.
3. Once every session records, measures the node process over ``--seconds``: CPU (utime +
   stime from /proc), RSS before the sessions and with them; optionally py-spy samples the node
   to show what dominates.
4. Reports CPU seconds per session-minute, sessions per core (60 / that), memory per session,
   checks that every session's recording decodes (PyAV), and writes the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from bench import procstat
from inspection import tokens
from inspection.models import inspection_sessions
from node.accounts.service import create_user
from node.config import NodeConfig
from node.provisioning import init_node
from node.storage.database import Database
from tests.support.nodes import wait_healthy

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-inspection-pw"
#: How the node process is started, by event loop. ``uvloop`` (pip install uvloop) installs
#: libuv's loop before the node starts: the node itself runs on asyncio's (measured: no win
#: worth a dependency, docs/inspection.md "Cost").
NODE_COMMAND = {
    "asyncio": [sys.executable, "-m", "node.cli"],
    "uvloop": [
        sys.executable,
        "-c",
        "import sys, uvloop; uvloop.install(); from node.cli import main; sys.exit(main())",
    ],
}
FPS = 20
WIDTH, HEIGHT = 640, 480


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def encode_video(frames: int = 200, bitrate: int = 600_000) -> list[bytes]:
    """A loop of VP8 frames with motion (a bright bar sweeping over a gradient)."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = WIDTH, HEIGHT
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.bit_rate = bitrate
    encoder.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "g": str(frames),
        "lag-in-frames": "0",
    }
    row = bytes((x * 255) // WIDTH for x in range(WIDTH))
    chroma = bytes([128]) * (WIDTH * HEIGHT // 4)
    out: list[bytes] = []
    for n in range(frames):
        bar = (n * 8) % WIDTH
        line = bytearray(row)
        line[bar : bar + 40] = bytes([235]) * len(line[bar : bar + 40])
        shift = n % HEIGHT
        y = b"".join(bytes(line) if (i + shift) % 60 < 30 else row for i in range(HEIGHT))
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane, data in zip(frame.planes, (y, chroma, chroma), strict=True):
            plane.update(data)
        frame.pts = n
        out += [bytes(p) for p in encoder.encode(frame)]
    out += [bytes(p) for p in encoder.encode(None)]
    return out


def encode_audio(packets: int = 50) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48_000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.time_base = fractions.Fraction(1, 48_000)
    out: list[bytes] = []
    for n in range(packets):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(bytes(960 * 4))
        frame.sample_rate = 48_000
        frame.pts = n * 960
        out += [bytes(p) for p in encoder.encode(frame)]
    return out


class LoopTrack(MediaStreamTrack):
    """Pre-encoded packets in a loop, paced in real time (no encoding on the client)."""

    def __init__(self, kind: str, packets: list[bytes], rate: float, clock: int) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._rate = rate
        self._clock = clock
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n / self._rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self._packets[self._n % len(self._packets)])
        packet.pts = int(self._n * self._clock / self._rate)
        packet.time_base = fractions.Fraction(1, self._clock)
        self._n += 1
        return packet


async def gathered_offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


class Peer:
    def __init__(self, http: aiohttp.ClientSession, url: str, join: dict[str, Any]) -> None:
        self.http, self.url, self.join = http, url, join
        self.pc = RTCPeerConnection()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received = Counter[str]()
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self, tracks: list[MediaStreamTrack], receive: list[str]) -> None:
        self.ws = await self.http.ws_connect(self.url)
        await self.ws.send_json(self.join)
        joined = await self.ws.receive_json()
        assert joined["type"] == "joined", joined
        for track in tracks:
            self.pc.addTransceiver(
                track, direction="sendrecv" if track.kind in receive else "sendonly"
            )
        for kind in receive:
            if not any(t.kind == kind for t in tracks):
                self.pc.addTransceiver(kind, direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._drain(track)))

        await self.ws.send_json({"type": "offer", "sdp": await gathered_offer(self.pc)})
        while True:
            reply = await self.ws.receive_json()
            if reply["type"] == "answer":
                break
            assert reply["type"] != "error", reply
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        self._tasks.append(asyncio.ensure_future(self._ignore_messages()))

    async def _drain(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except Exception:
                return
            self.received[track.kind] += 1

    async def _ignore_messages(self) -> None:
        assert self.ws is not None
        async for _msg in self.ws:
            pass

    async def close(self) -> None:
        await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
        for task in self._tasks:
            task.cancel()


async def make_node(tmp: Path, sessions: int) -> tuple[Any, list[tuple[str, str]]]:
    config = await init_node(tmp / "node", region="430523", name="邵阳县", port=free_port())
    db = Database(config.database_url)
    made: list[tuple[str, str]] = []
    try:
        await create_user(db, "inspector", PASSWORD, "inspector", "赵强")
        now = time.time()
        async with db.write() as conn:
            for n in range(sessions):
                sid = str(uuid.uuid4())
                secret = tokens.new_secret()
                await conn.execute(
                    inspection_sessions.insert().values(
                        id=sid,
                        case_id=n + 1,
                        xt_id=f"bench-{n}",
                        case_no=f"BENCH-{n:04d}",
                        kind="inspection",
                        status="scheduled",
                        scheduled_at=now,
                        expires_at=now + 3600,
                        token_secret=secret,
                        checklist="[]",
                        results="{}",
                        participants=json.dumps(
                            [
                                {"role": "inspector", "name": "赵强", "username": "inspector"},
                                {"role": "applicant", "name": "申请人"},
                            ]
                        ),
                        created_by="bench",
                        created_at=now,
                    )
                )
                token = tokens.issue(secret, sid, role="applicant", now=now, expires_at=now + 3600)
                made.append((sid, token))
    finally:
        await db.dispose()
    return config, made


def spawn_node(config: NodeConfig, log: Path, loop: str = "asyncio") -> subprocess.Popen[bytes]:
    """`tongban run` on ``config``'s folder (on ``loop``), its output into ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*NODE_COMMAND[loop], "run", "--dir", str(config.dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


IDLE_LEAVES = (
    "select (selectors.py",
    "wait (threading.py",
    "get (queue.py",
    "_connection_worker_thread (aiosqlite",
    "_worker (concurrent/futures/thread.py",
)
#: Inclusive buckets of busy samples: the first pattern found anywhere in a stack names it.
BUCKETS = {
    "SRTP/DTLS (pylibsrtp, OpenSSL)": ("pylibsrtp", "rtcdtlstransport", "OpenSSL"),
    "UDP send/receive (asyncio datagram)": ("_SelectorDatagramTransport",),
    "ICE (aioice)": ("aioice",),
    "RTP receive (jitter buffer, depayload, RTCP)": ("rtcrtpreceiver", "jitterbuffer", "rtp.py"),
    "RTP send (relay packetizing)": ("rtcrtpsender", "codecs/vpx", "codecs/opus"),
    "recording (PyAV mux)": ("recorder.py",),
    "relay (inspection)": ("relay.py",),
    "session routing (inspection)": ("session.py", "passthrough.py"),
    "HTTP/WebSocket (aiohttp)": ("aiohttp/web_protocol", "aiohttp/web_ws", "aiohttp/_websocket"),
    "database": ("sqlalchemy/", "aiosqlite/"),
}


def _bucket(frames: list[str]) -> str:
    """The innermost frame that names a bucket names the sample."""
    for frame in reversed(frames):
        for name, patterns in BUCKETS.items():
            if any(p in frame for p in patterns):
                return name
    return "other (asyncio loop, threads)"


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """py-spy samples of the node: the share that was busy, and of the busy samples the share
    per bucket (innermost matching frame) and per leaf function."""
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if any(frames[-1].startswith(p) or p in frames[-1] for p in IDLE_LEAVES):
            continue
        busy += count
        leaves[frames[-1][:110]] += count
        inclusive[_bucket(frames)] += count

    def share(c: int) -> float:
        return round(100 * c / max(1, busy), 1)

    return {
        "samples": total,
        "busy_samples": busy,
        "busy_by_part_pct": {k: share(v) for k, v in inclusive.most_common()},
        "busy_top_leaves_pct": {k: share(v) for k, v in leaves.most_common(top)},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-inspection-"))
    config, sessions = await make_node(tmp, args.sessions)
    proc = spawn_node(config, tmp / "node.log", args.loop)
    peers: list[Peer] = []
    result: dict[str, Any] = {
        "sessions": args.sessions,
        "seconds": args.seconds,
        "event_loop": args.loop,
    }
    try:
        await wait_healthy(proc, config.url, "node", timeout=30)
        video, audio = encode_video(), encode_audio()
        await asyncio.sleep(2)
        rss_idle = procstat.rss_mib(proc.pid)
        cpu_idle0 = procstat.cpu(proc.pid)
        await asyncio.sleep(3)
        idle_cpu_s = (procstat.cpu(proc.pid) - cpu_idle0).total / 3
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{config.url}/api/v1/login", json={"username": "inspector", "password": PASSWORD}
            ) as resp:
                staff_token = (await resp.json())["token"]
            ws_base = config.url.replace("http://", "ws://")
            for sid, token in sessions:
                url = f"{ws_base}/inspection/{sid}/ws"
                applicant = Peer(http, url, {"type": "join", "token": token})
                await applicant.start(
                    [LoopTrack("video", video, FPS, 90_000), LoopTrack("audio", audio, 50, 48_000)],
                    receive=["audio"],
                )
                peers.append(applicant)
                if not args.no_inspector:
                    inspector = Peer(http, url, {"type": "join", "auth": staff_token})
                    await inspector.start(
                        [LoopTrack("audio", audio, 50, 48_000)], receive=["video", "audio"]
                    )
                    peers.append(inspector)
            await asyncio.sleep(5)  # every session settles
            rss_before = procstat.rss_mib(proc.pid)
            spy = None
            if args.profile:
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--duration",
                        str(int(args.seconds)),
                        "--rate",
                        str(args.profile_rate),
                        "--format",
                        "raw",
                        "--threads",
                        "--output",
                        str(tmp / "profile.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=open(tmp / "py-spy.log", "wb"),  # noqa: SIM115
                )
            received0 = sum(p.received["video"] for p in peers)
            machine0 = procstat.machine_cpu()
            cpu0 = procstat.cpu(proc.pid)
            t0 = time.monotonic()
            await asyncio.sleep(args.seconds)
            elapsed = time.monotonic() - t0
            used = (procstat.cpu(proc.pid) - cpu0).total - idle_cpu_s * elapsed
            machine = procstat.machine_cpu() - machine0
            received = sum(p.received["video"] for p in peers) - received0
            rss_after = procstat.rss_mib(proc.pid)
            if spy is not None:
                spy.wait(timeout=args.seconds + 30)
        per_minute = used / args.sessions / (elapsed / 60)
        result.update(
            {
                "inspector_per_session": not args.no_inspector,
                "node_cpu_s": round(used, 3),
                "node_idle_cpu_s_per_s": round(idle_cpu_s, 4),
                "cpu_s_per_session_minute": round(per_minute, 3),
                "sessions_per_core": round(60 / per_minute, 1) if per_minute > 0 else None,
                "rss_idle_mib": rss_idle,
                "rss_with_sessions_mib": rss_after,
                "memory_per_session_mib": round(
                    ((rss_after or 0) - (rss_idle or 0)) / args.sessions, 2
                ),
                "rss_before_window_mib": rss_before,
                "relayed_video_fps_per_inspector": (
                    None if args.no_inspector else round(received / args.sessions / elapsed, 1)
                ),
                "machine_busy_cores": round(machine.busy / elapsed, 2),
            }
        )
        if args.profile and (tmp / "profile.txt").exists():
            result["profile"] = summarize_profile(tmp / "profile.txt")
    finally:
        for peer in peers:
            await peer.close()
        await asyncio.sleep(2)  # let the node finalize the recordings
        proc.terminate()
        proc.wait(timeout=30)
    recordings = []
    for sid, _token in sessions:
        for path in sorted((config.dir / "inspections" / sid).glob("*.webm")):
            from inspection.media import probe

            found = probe(path)
            recordings.append(
                {
                    "frames": found.video_frames,
                    "duration_s": round(found.duration_s, 1),
                    "bytes": path.stat().st_size,
                }
            )
    result["recordings"] = recordings
    result["machine"] = procstat.machine_info(REPO)
    result["tmp"] = str(tmp)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--no-inspector", action="store_true")
    parser.add_argument(
        "--loop", choices=sorted(NODE_COMMAND), default="asyncio", help="the node's event loop"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the node (needs py-spy)")
    parser.add_argument(
        "--profile-rate",
        type=int,
        default=200,
        help="py-spy samples per second (at 50 a 20 s window held only ~100 busy samples)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "inspection.json")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    keys = (
        "sessions",
        "event_loop",
        "cpu_s_per_session_minute",
        "sessions_per_core",
        "memory_per_session_mib",
        "relayed_video_fps_per_inspector",
        "machine_busy_cores",
    )
    for key in keys:
        print(f"{key:34} {result.get(key)}")
    for rec in result["recordings"]:
        print("recording", rec)
    if "profile" in result:
        print(json.dumps(result["profile"], ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
