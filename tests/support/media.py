"""Synthetic media for the inspection tests: a recognisable picture (four quarters of distinct
brightness), a .y4m file of it for Chromium's fake camera, and aiortc clients that join a
session over its WebSocket like the pages do."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

#: Mean luma of each quarter: top-left, top-right, bottom-left, bottom-right.
QUARTERS = (40, 200, 120, 80)
WIDTH, HEIGHT = 640, 480


def luma_plane(width: int, height: int, quarters: tuple[int, ...] = QUARTERS) -> bytes:
    half_w, half_h = width // 2, height // 2
    top = bytes([quarters[0]]) * half_w + bytes([quarters[1]]) * (width - half_w)
    bottom = bytes([quarters[2]]) * half_w + bytes([quarters[3]]) * (width - half_w)
    return top * half_h + bottom * (height - half_h)


def write_y4m(
    path: Path, *, frames: int = 60, fps: int = 30, width: int = WIDTH, height: int = HEIGHT
) -> Path:
    """A YUV4MPEG2 file showing the quarters (Chromium loops it as its fake camera)."""
    y = luma_plane(width, height)
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n")
            out.write(y)
            out.write(chroma)
            out.write(chroma)
    return path.resolve()


def matches_quarters(measured: Any, expected: tuple[int, ...] = QUARTERS, tol: float = 20) -> bool:
    return all(abs(float(m) - e) <= tol for m, e in zip(measured, expected, strict=True))


class PatternTrack(MediaStreamTrack):
    """Video of the quarters at ``fps``, paced in real time."""

    kind = "video"

    def __init__(self, fps: int = 15, width: int = WIDTH, height: int = HEIGHT) -> None:
        super().__init__()
        self.fps = fps
        self.width, self.height = width, height
        self._y = luma_plane(width, height)
        self._c = bytes([128]) * ((width // 2) * (height // 2))
        self._n = 0
        self._start: float | None = None
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._n / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, data in zip(frame.planes, (self._y, self._c, self._c), strict=True):
            if plane.line_size == plane.width:
                plane.update(data)
            else:  # padded rows
                w = plane.width
                rows = [
                    data[i * w : (i + 1) * w].ljust(plane.line_size, b"\0")
                    for i in range(plane.height)
                ]
                plane.update(b"".join(rows))
        frame.pts = self._n * 90_000 // self.fps
        frame.time_base = fractions.Fraction(1, 90_000)
        self._n += 1
        self.sent += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """20 ms frames of quiet audio, 48 kHz stereo."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(bytes(960 * 4))
        frame.sample_rate = 48_000
        frame.pts = self._n * 960
        frame.time_base = fractions.Fraction(1, 48_000)
        self._n += 1
        return frame


@dataclass
class Client:
    """One participant: its signalling socket and its peer connection."""

    http: aiohttp.ClientSession
    ws_url: str
    join: dict[str, Any]
    video: bool = True
    audio: bool = True
    receive_video: bool = False
    fps: int = 15
    #: The peer connection's configuration (ICE servers, transport policy); aiortc's default
    #: when None.
    configuration: RTCConfiguration | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    pc: RTCPeerConnection | None = None
    joined: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    received: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    keyframes: int = 0
    pattern: PatternTrack | None = None
    _reader: asyncio.Task[Any] | None = None
    _consumers: list[asyncio.Future[Any]] = field(default_factory=list)
    _inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _closed: dict[str, Any] | None = None

    async def open(self) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(self.ws_url)
        self._reader = asyncio.ensure_future(self._read())
        await self.send(self.join)
        reply = await self.expect("joined", "error")
        if reply["type"] == "joined":
            self.joined = reply
        return reply

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message))

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.messages.append(data)
            self._inbox.put_nowait(data)
        self._inbox.put_nowait({"type": "closed", "code": self.ws.close_code})

    async def expect(self, *kinds: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next message of one of ``kinds`` (others are skipped), or ``closed``."""
        if self._closed is not None:
            return self._closed
        while True:
            try:
                data = await asyncio.wait_for(self._inbox.get(), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"no {kinds} within {timeout} s: {self.messages[-5:]}"
                ) from None
            if data["type"] == "closed":
                self._closed = data
                return data
            if data["type"] in kinds:
                return data

    async def connect(self) -> None:
        """Offer media and wait for the node's answer (non-trickle: candidates in the SDP)."""
        old = self.pc
        pc = self.pc = RTCPeerConnection(self.configuration)
        if old is not None:
            await old.close()
        if self.audio:
            pc.addTrack(ToneTrack())
        else:
            pc.addTransceiver("audio", direction="recvonly")
        if self.video:
            self.pattern = PatternTrack(self.fps)
            pc.addTransceiver(
                self.pattern, direction="sendrecv" if self.receive_video else "sendonly"
            )
        elif self.receive_video:
            pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._consumers.append(asyncio.ensure_future(self._consume(track)))

        await pc.setLocalDescription(await pc.createOffer())
        await self.send({"type": "offer", "sdp": pc.localDescription.sdp})
        answer = await self.expect("answer", "error")
        assert answer["type"] == "answer", answer
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                item = await track.recv()
            except Exception:
                return
            self.received[track.kind] += 1
            if isinstance(item, av.Packet) and item.is_keyframe:
                self.keyframes += 1

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def _run_applicant(ws_url: str, token: str) -> None:
    """Join as the applicant and stream until killed (the dead-peer tests SIGKILL this)."""
    async with aiohttp.ClientSession() as http:
        client = Client(http, ws_url, {"type": "join", "token": token})
        reply = await client.open()
        assert reply["type"] == "joined", reply
        await client.connect()
        print("streaming", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(_run_applicant(sys.argv[1], sys.argv[2]))
