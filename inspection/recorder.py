"""Record received VP8 video and Opus audio packets into Matroska, without transcoding.

Matroska stays readable when the writer dies: every packet is flushed to the file as it is
muxed and clusters are cut each second, so a process killed mid-session leaves a playable
file up to its last second. (An unclosed MP4 is unreadable.)
"""

from __future__ import annotations

import fractions
import logging
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from inspection.passthrough import vp8_size

log = logging.getLogger(__name__)

MS = fractions.Fraction(1, 1000)
#: OpusHead (RFC 7845 §5.1): version 1, 2 channels, 312 samples pre-skip, 48 kHz, gain 0.
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48_000, 0, 0)
#: Audio packets kept while waiting for the first video key frame.
MAX_PENDING_AUDIO = 500


@dataclass
class _Clock:
    """Maps one stream's RTP time to milliseconds since the recording began."""

    offset_ms: int
    origin: int
    rate: int
    last_ms: int = -1

    def ms(self, pts: int) -> int:
        value = self.offset_ms + (pts - self.origin) * 1000 // self.rate
        value = max(value, self.last_ms + 1)  # strictly increasing, as Matroska wants
        self.last_ms = value
        return value


@dataclass
class Recording:
    """What a finished (or interrupted) recording holds."""

    path: Path
    video_frames: int = 0
    audio_packets: int = 0
    keyframes: int = 0
    width: int | None = None
    height: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    duration_ms: int = 0
    extra: dict[str, object] = field(default_factory=dict)


class MatroskaRecorder:
    """Feed it packets from the loop thread; ``close()`` finalizes the file."""

    def __init__(self, path: Path, *, video: bool, audio: int) -> None:
        """``audio`` is the number of Opus streams (the applicant's, then the inspector's)."""
        self.path = path
        self.want_video = video
        self.want_audio = audio
        self.info = Recording(path)
        self._container: av.container.OutputContainer | None = None
        self._vstream: av.stream.Stream | None = None
        self._astreams: list[av.stream.Stream] = []
        self._vclock: _Clock | None = None
        self._aclocks: dict[int, _Clock] = {}
        self._alast: dict[int, int] = {}
        self._t0: float | None = None
        self._pending_audio: list[tuple[float, av.Packet, int]] = []
        self.closed = False

    def _open(self, width: int | None, height: int | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(self.path),
            "w",
            format="webm",
            options={"flush_packets": "1", "cluster_time_limit": "1000"},
        )
        if self.want_video:
            stream = container.add_stream("vp8", rate=30)
            stream.width = width or 640
            stream.height = height or 480
            stream.time_base = MS
            self._vstream = stream
        for _ in range(self.want_audio):
            astream = container.add_stream("opus", rate=48_000)
            astream.codec_context.extradata = OPUS_HEAD
            astream.time_base = MS
            self._astreams.append(astream)
        self._container = container
        self._t0 = time.time()
        self.info.started_at = self._t0
        self.info.width, self.info.height = width, height

    def _mux(self, packet: av.Packet, stream: av.stream.Stream, pts_ms: int) -> None:
        assert self._container is not None
        out = av.Packet(bytes(packet))
        out.pts = out.dts = pts_ms
        out.time_base = MS
        out.stream = stream
        if packet.is_keyframe:
            out.is_keyframe = True
        self._container.mux(out)
        self.info.duration_ms = max(self.info.duration_ms, pts_ms)

    def add_video(self, packet: av.Packet, arrived: float | None = None) -> None:
        if self.closed or not self.want_video:
            return
        arrived = time.time() if arrived is None else arrived
        data = bytes(packet)
        if self._container is None:
            size = vp8_size(data)
            if size is None:
                return  # wait for a key frame: a recording must start decodable
            self._open(*size)
            self._vclock = _Clock(0, int(packet.pts or 0), 90_000)
            for when, audio, index in self._pending_audio:
                self._add_audio_open(audio, when, index)
            self._pending_audio.clear()
        assert self._vstream is not None
        if self._vclock is None:
            assert self._t0 is not None
            self._vclock = _Clock(int((arrived - self._t0) * 1000), int(packet.pts or 0), 90_000)
        self._mux(packet, self._vstream, self._vclock.ms(int(packet.pts or 0)))
        self.info.video_frames += 1
        if packet.is_keyframe:
            self.info.keyframes += 1

    def add_audio(self, packet: av.Packet, arrived: float | None = None, index: int = 0) -> None:
        if self.closed or index >= self.want_audio:
            return
        arrived = time.time() if arrived is None else arrived
        if self._container is None:
            if not self.want_video:
                self._open(None, None)
            else:
                if len(self._pending_audio) < MAX_PENDING_AUDIO:
                    self._pending_audio.append((arrived, packet, index))
                return
        self._add_audio_open(packet, arrived, index)

    def restart_audio(self, index: int) -> None:
        """A new source for stream ``index`` (a reconnected inspector): its own clock."""
        old = self._aclocks.pop(index, None)
        if old is not None:
            self._alast[index] = old.last_ms

    def _add_audio_open(self, packet: av.Packet, arrived: float, index: int) -> None:
        assert self._t0 is not None
        clock = self._aclocks.get(index)
        if clock is None:
            offset = max(0, int((arrived - self._t0) * 1000))
            last = self._alast.get(index, -1)
            clock = self._aclocks[index] = _Clock(offset, int(packet.pts or 0), 48_000, last)
        pts = int(packet.pts or 0)
        if pts < clock.origin:
            return  # audio from before the recording began
        self._mux(packet, self._astreams[index], clock.ms(pts))
        self.info.audio_packets += 1

    def close(self) -> Recording:
        """Write the trailer (cues, duration). Idempotent."""
        if not self.closed:
            self.closed = True
            self.info.ended_at = time.time()
            if self._container is not None:
                try:
                    self._container.close()
                except av.FFmpegError:  # pragma: no cover - a full disk, say
                    log.exception("closing recording %s failed", self.path.name)
        return self.info

    @property
    def started(self) -> bool:
        return self._container is not None
