"""Still pictures from the received video, at the resolution it arrived in.

The node never decodes the live stream. It keeps the packets since the last key frame (one
group of pictures); a snapshot decodes that group in a worker thread and encodes the newest
picture as JPEG. A group that grows past ``MAX_GOP`` is dropped and a key frame requested.
"""

from __future__ import annotations

import asyncio
import fractions
import io
from dataclasses import dataclass

import av

from inspection.passthrough import vp8_keyframe

MAX_GOP = 900  # about 45 s at 20 fps


@dataclass(frozen=True)
class Picture:
    jpeg: bytes
    width: int
    height: int
    #: Mean luma per quarter (top-left, top-right, bottom-left, bottom-right): lets tests and
    #: reviewers check what the picture shows without an image library.
    quarters: tuple[float, float, float, float]


class GopBuffer:
    def __init__(self) -> None:
        self._packets: list[bytes] = []
        self.overflowed = False

    def add(self, data: bytes) -> None:
        if vp8_keyframe(data):
            self._packets = [data]
            self.overflowed = False
        elif self._packets:
            if len(self._packets) >= MAX_GOP:
                self._packets = []
                self.overflowed = True
            else:
                self._packets.append(data)

    @property
    def ready(self) -> bool:
        return bool(self._packets)

    def copy(self) -> list[bytes]:
        return list(self._packets)


def quarters(frame: av.VideoFrame) -> tuple[float, float, float, float]:
    gray = frame.reformat(format="gray")
    data = bytes(gray.planes[0])
    stride = gray.planes[0].line_size
    w, h = gray.width, gray.height
    sums = [0, 0, 0, 0]
    counts = [0, 0, 0, 0]
    step = 4
    for y in range(0, h, step):
        row = data[y * stride : y * stride + w]
        for x in range(0, w, step):
            q = (1 if x >= w // 2 else 0) + (2 if y >= h // 2 else 0)
            sums[q] += row[x]
            counts[q] += 1
    return tuple(s / max(1, c) for s, c in zip(sums, counts, strict=True))  # type: ignore[return-value]


def decode_last(packets: list[bytes], quality: int = 3) -> Picture:
    """Decode a group of pictures and encode its last picture as JPEG (full resolution)."""
    decoder = av.CodecContext.create("vp8", "r")
    last: av.VideoFrame | None = None
    for data in packets:
        for frame in decoder.decode(av.Packet(data)):
            last = frame
    for frame in decoder.decode(None):
        last = frame
    if last is None:
        raise ValueError("no picture decoded")
    return Picture(encode_jpeg(last, quality), last.width, last.height, quarters(last))


def encode_jpeg(frame: av.VideoFrame, quality: int = 3) -> bytes:
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = frame.width
    encoder.height = frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = frame.time_base or fractions.Fraction(1, 30)
    encoder.options = {"qmin": str(quality), "qmax": str(quality)}
    picture = frame.reformat(format="yuvj420p")
    picture.pts = 0
    out = io.BytesIO()
    for packet in encoder.encode(picture):
        out.write(bytes(packet))
    for packet in encoder.encode(None):
        out.write(bytes(packet))
    return out.getvalue()


def with_comment(jpeg: bytes, comment: str) -> bytes:
    """The JPEG with a COM segment after SOI: what, where and when, in the file itself (and no
    two snapshots of a still scene share a digest)."""
    text = comment.encode("ascii", "replace")[:60000]
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


async def snapshot(packets: list[bytes]) -> Picture:
    return await asyncio.to_thread(decode_last, packets)
