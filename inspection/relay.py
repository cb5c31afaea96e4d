"""Forwarding received packets to other peers without decoding them.

A ``PacketTrack`` is the sending side: the session pushes packets of whichever source is
current (the applicant's camera, the inspector's microphone); the track rebases their
timestamps so a reconnected source continues the stream, and for video it holds everything
back until a key frame, which it asks the source for. A viewer's keyframe requests (PLI/FIR,
which aiortc's sender turns into ``_send_keyframe``) are passed to the source the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from inspection.passthrough import AUDIO_CLOCK, VIDEO_CLOCK, vp8_keyframe

MAX_QUEUE = {"video": 90, "audio": 150}
#: Timestamp gap inserted when the source changes (one frame of video, 20 ms of audio).
GAP = {"video": VIDEO_CLOCK // 30, "audio": AUDIO_CLOCK // 50}


class PacketTrack(MediaStreamTrack):
    def __init__(self, kind: str, request_keyframe: Callable[[], None]) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()
        self._request_keyframe = request_keyframe
        self._source: object = None
        self._offset = 0
        self._last: int | None = None
        self._waiting_key = kind == "video"
        self.sent = 0
        self.dropped = 0

    def push(self, packet: av.Packet, source: object) -> None:
        if self.readyState != "live":
            return
        pts = int(packet.pts or 0)
        if source is not self._source:
            self._source = source
            self._offset = 0 if self._last is None else self._last + GAP[self.kind] - pts
            if self.kind == "video":
                self._waiting_key = True
        data = bytes(packet)
        if self._waiting_key:
            if not vp8_keyframe(data):
                self.dropped += 1
                self._request_keyframe()
                return
            self._waiting_key = False
        if self._queue.qsize() >= MAX_QUEUE[self.kind]:
            # The viewer cannot keep up: start again from the next key frame.
            while not self._queue.empty():
                self._queue.get_nowait()
            self.dropped += 1
            if self.kind == "video":
                self._waiting_key = True
                self._request_keyframe()
                return
        out = av.Packet(data)
        out.pts = out.dts = pts + self._offset
        out.time_base = packet.time_base
        self._last = out.pts
        self._queue.put_nowait(out)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        self.sent += 1
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            self._queue.put_nowait(None)
        super().stop()


def forward_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Pass a viewer's PLI/FIR on: a relay cannot make key frames itself. (aiortc 1.16 calls
    ``_send_keyframe`` on the sender for both; an instance attribute takes its place.)"""
    sender._send_keyframe = request  # type: ignore[method-assign]
