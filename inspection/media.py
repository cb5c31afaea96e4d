"""Reading back what was recorded: duration and frame counts (PyAV), in a worker thread."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class Probe:
    duration_s: float
    video_frames: int
    audio_packets: int
    width: int | None
    height: int | None


def probe(path: Path) -> Probe:
    """Count the packets of a Matroska file and measure its span (works on unclosed files)."""
    video = audio = 0
    first: float | None = None
    last = 0.0
    width = height = None
    with av.open(str(path)) as container:
        for stream in container.streams:
            if stream.type == "video":
                width, height = stream.codec_context.width, stream.codec_context.height
        for packet in container.demux():
            if packet.pts is None or packet.size == 0:
                continue
            when = float(packet.pts * packet.time_base)
            first = when if first is None else min(first, when)
            last = max(last, when)
            if packet.stream.type == "video":
                video += 1
            elif packet.stream.type == "audio":
                audio += 1
    return Probe(last - (first or 0.0), video, audio, width, height)


async def probe_async(path: Path) -> Probe:
    return await asyncio.to_thread(probe, path)
