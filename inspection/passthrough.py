"""Receive VP8 video and Opus audio as encoded packets, without decoding.

aiortc (pinned at 1.16) has no public API for encoded frames: its receiver re-assembles each
frame (a ``JitterFrame`` with ``data`` and a 90 kHz / 48 kHz ``timestamp``) and hands it, on
the receiver's decoder thread, to the decoder that ``aiortc.rtcrtpreceiver.get_decoder(codec)``
returns. We replace that lookup for video/VP8 and audio/opus with a "decoder" that returns the
frame as an ``av.Packet``, so remote tracks yield packets: the recorder remuxes them into
Matroska and the relay sends them on (``RTCRtpSender`` packs an ``av.Packet`` without encoding).
tests/test_inspection_media.py fails if these internals move.

The replacement is process-wide: every aiortc peer in a node process receives packets.

``inline_frames(pc)`` then takes the decoder thread out of the path: aiortc queues each frame
to a per-receiver thread (``queue.Queue``: a futex wake-up, a GIL hand-over) which hands it
back to the loop (``run_coroutine_threadsafe``: a Task and a self-pipe write). For a packet
"decoder" that round trip costs more than the work; ``InlineFrames`` takes the queue's place
and delivers on the loop thread, straight from the receiver's ``_handle_rtp_packet``: to a
``consumer`` callback when one is set (no queue, no task wake-up per frame), else to the
remote track's queue.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, rtcrtpreceiver

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
_installed = False


def vp8_keyframe(data: bytes) -> bool:
    """Bit 0 of a VP8 frame tag is 0 for a key frame (RFC 6386 §9.1)."""
    return len(data) >= 10 and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a"


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 key frame header, or None for an inter frame."""
    if not vp8_keyframe(data):
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


class PacketDecoder:
    """Looks like an aiortc decoder; returns the encoded frame as one ``av.Packet``."""

    def __init__(self, clock_rate: int, video: bool) -> None:
        self.time_base = fractions.Fraction(1, clock_rate)
        self.video = video

    def decode(self, encoded_frame: Any) -> list[av.Packet]:
        data = bytes(encoded_frame.data)
        if not data:
            return []
        packet = av.Packet(data)
        packet.pts = packet.dts = int(encoded_frame.timestamp)
        packet.time_base = self.time_base
        if self.video:
            packet.is_keyframe = vp8_keyframe(data)
        return [packet]


def install() -> None:
    """Make VP8 and Opus arrive as packets (idempotent)."""
    global _installed
    if _installed:
        return
    original = rtcrtpreceiver.get_decoder

    def get_decoder(codec: Any) -> Any:
        mime = codec.mimeType.lower()
        if mime == "video/vp8":
            return PacketDecoder(VIDEO_CLOCK, True)
        if mime == "audio/opus":
            return PacketDecoder(AUDIO_CLOCK, False)
        return original(codec)

    rtcrtpreceiver.get_decoder = get_decoder  # type: ignore[assignment]
    _installed = True


class InlineFrames:
    """Stands in for an ``RTCRtpReceiver``'s decoder queue (aiortc 1.16 ``__decoder_queue``).

    ``put((codec, frame))`` is called on the loop thread by ``_handle_rtp_packet``: the frame
    is "decoded" (with passthrough installed: made an ``av.Packet``) and handed to
    ``consumer`` or, without one, put on the remote track's queue at once. ``put(None)`` (the
    receiver stopping) ends the track. The receiver's decoder thread still starts, reads
    ``get()`` and sleeps in it until then: it never sees a frame.
    """

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = receiver
        self._decoders: dict[str, Any] = {}
        self._stopped = threading.Event()
        #: Called with each packet on the loop thread, inside aiortc's receive path.
        self.consumer: Callable[[Any], None] | None = None

    def _queue(self) -> asyncio.Queue[Any] | None:
        track: Any = self._receiver.track  # aiortc's RemoteStreamTrack, with its frame queue
        return None if track is None else cast("asyncio.Queue[Any]", track._queue)

    def put(self, item: tuple[Any, Any] | None) -> None:
        queue = self._queue()
        if item is None:
            self._stopped.set()
            if queue is not None:
                queue.put_nowait(None)
            return
        codec, encoded_frame = item
        decoder = self._decoders.get(codec.name)
        if decoder is None:
            decoder = self._decoders[codec.name] = _get_decoder(codec)
        try:
            frames = decoder.decode(encoded_frame)
        except av.FFmpegError as exc:  # only a real decoder (another codec) raises
            log.warning("%s frame failed to decode: %s", codec.mimeType, exc)
            return
        consumer = self.consumer
        if consumer is not None:
            for frame in frames:
                try:
                    consumer(frame)
                except Exception:
                    # Raised into aiortc it would end the connection's whole receive loop.
                    log.exception("%s packet consumer failed", codec.mimeType)
        elif queue is not None:
            for frame in frames:
                queue.put_nowait(frame)

    def get(self) -> None:
        """What the idle decoder thread waits in; ``None`` ends it (and, a second time, the
        track, which is harmless)."""
        self._stopped.wait()


def _get_decoder(codec: Any) -> Any:
    """aiortc's lookup as it is now (``install`` replaces it after import)."""
    return rtcrtpreceiver.get_decoder(codec)  # type: ignore[attr-defined]


def inline_frames(pc: RTCPeerConnection) -> list[tuple[MediaStreamTrack, InlineFrames]]:
    """Deliver ``pc``'s received frames on the loop thread (call after
    ``setRemoteDescription``, before the receivers start): each remote track with the sink
    whose ``consumer`` may take its packets."""
    sinks: list[tuple[MediaStreamTrack, InlineFrames]] = []
    for receiver in pc.getReceivers():
        sink = InlineFrames(receiver)
        receiver._RTCRtpReceiver__decoder_queue = sink  # type: ignore[attr-defined]
        if receiver.track is not None:
            sinks.append((receiver.track, sink))
    return sinks


def tune_consent(interval: float = 1.5, failures: int = 6) -> None:
    """Detect a dead peer within about ``failures × (interval + 0.5)`` seconds (aioice
    defaults to 5 s × 6): an applicant whose phone vanished must end its recording within
    15 s."""
    from aioice import ice

    ice.CONSENT_INTERVAL = interval  # type: ignore[assignment]
    ice.CONSENT_FAILURES = failures
