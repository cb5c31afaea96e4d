"""The media parts on their own: the aiortc internals the recorder leans on, VP8/Opus
passthrough to WebM, a recording that survives its writer being killed, snapshots at full
resolution, and the join tokens."""

from __future__ import annotations

import asyncio
import fractions
import inspect
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import aiortc
import av
import pytest
from aiortc import RTCRtpCodecParameters, RTCRtpReceiver, RTCRtpSender, rtcrtpreceiver

from inspection import tokens
from inspection.errors import InspectionError
from inspection.media import probe
from inspection.passthrough import InlineFrames, PacketDecoder, install, vp8_keyframe, vp8_size
from inspection.recorder import MatroskaRecorder
from inspection.snapshots import GopBuffer, decode_last
from tests.support.media import QUARTERS, luma_plane, matches_quarters


def test_aiortc_internals_we_rely_on_are_still_there() -> None:
    """Pinned to aiortc 1.16: if any of these move, passthrough recording and PLI relay must be
    revisited (docs/inspection.md, "Media")."""
    assert aiortc.__version__ == "1.16.0"
    assert callable(rtcrtpreceiver.get_decoder)
    assert "get_decoder(codec)" in inspect.getsource(rtcrtpreceiver.decoder_worker)
    assert callable(RTCRtpReceiver._send_rtcp_pli)
    assert "_send_keyframe()" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self.__encoder.pack(data)" in inspect.getsource(RTCRtpSender._next_encoded_frame)
    # inline_frames: the decoder queue is the one attribute the receiver feeds and stops.
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__decoder_queue.put((codec, encoded_frame))" in handle
    assert "self.__decoder_queue," in inspect.getsource(RTCRtpReceiver.receive)
    assert "task = input_q.get()" in inspect.getsource(rtcrtpreceiver.decoder_worker)


def encoded_vp8(frames: int, width: int = 640, height: int = 480) -> list[av.Packet]:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "g": "1000"}
    y = luma_plane(width, height)
    c = bytes([128]) * (width * height // 4)
    packets = []
    for n in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, data in zip(frame.planes, (y, c, c), strict=True):
            plane.update(data)
        frame.pts = n
        packets += list(encoder.encode(frame))
    packets += list(encoder.encode(None))
    return packets


class _Jitter:
    def __init__(self, data: bytes, timestamp: int) -> None:
        self.data = data
        self.timestamp = timestamp


def test_packets_pass_through_into_a_webm_that_decodes(tmp_path: Path) -> None:
    encoded = encoded_vp8(45)
    assert vp8_keyframe(bytes(encoded[0])) and vp8_size(bytes(encoded[0])) == (640, 480)
    decoder = PacketDecoder(90_000, True)
    recorder = MatroskaRecorder(tmp_path / "r.webm", video=True, audio=0)
    for n, packet in enumerate(encoded):
        (out,) = decoder.decode(_Jitter(bytes(packet), n * 3000))
        recorder.add_video(out, arrived=1000.0 + n / 30)
    info = recorder.close()
    assert info.video_frames == 45 and info.width == 640
    found = probe(tmp_path / "r.webm")
    assert found.video_frames == 45
    assert abs(found.duration_s - 44 / 30) < 0.05
    picture = decode_last([bytes(p) for p in encoded])
    assert (picture.width, picture.height) == (640, 480)
    assert matches_quarters(picture.quarters, QUARTERS)
    assert picture.jpeg.startswith(b"\xff\xd8")


async def test_inline_frames_deliver_packets_on_the_loop_and_end_the_track() -> None:
    """A receiver's frames reach its track, or its consumer, without a thread; a failing
    consumer does not raise into aiortc; stopping the receiver ends the track and lets its
    (idle) decoder thread finish."""
    install()
    receiver = SimpleNamespace(track=SimpleNamespace(_queue=asyncio.Queue()))
    sink = InlineFrames(receiver)  # type: ignore[arg-type]
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
    key = bytes(encoded_vp8(1)[0])
    sink.put((vp8, _Jitter(key, 3000)))
    packet = receiver.track._queue.get_nowait()
    assert isinstance(packet, av.Packet) and bytes(packet) == key
    assert packet.pts == 3000 and packet.is_keyframe
    got: list[av.Packet] = []
    sink.consumer = got.append
    sink.put((vp8, _Jitter(key, 6000)))
    assert [p.pts for p in got] == [6000] and receiver.track._queue.empty()

    def fails(packet: av.Packet) -> None:
        raise RuntimeError("a bug in the consumer")

    sink.consumer = fails
    sink.put((vp8, _Jitter(key, 9000)))  # logged: raised, it would end aiortc's receive loop
    worker = threading.Thread(target=sink.get)
    worker.start()
    sink.put(None)
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert receiver.track._queue.get_nowait() is None


def test_gop_buffer_keeps_from_the_last_key_frame() -> None:
    encoded = [bytes(p) for p in encoded_vp8(5)]
    gop = GopBuffer()
    gop.add(encoded[1])  # no key frame yet: nothing to decode from
    assert not gop.ready
    for data in encoded:
        gop.add(data)
    assert gop.ready and gop.copy()[0] == encoded[0] and len(gop.copy()) == 5


WRITER = """
import sys, time, fractions
sys.path.insert(0, {root!r})
from tests.test_inspection_media import encoded_vp8
from inspection.recorder import MatroskaRecorder
from inspection.passthrough import PacketDecoder

class J:
    def __init__(self, d, t): self.data, self.timestamp = d, t

packets = encoded_vp8(400, 320, 240)
rec = MatroskaRecorder(__import__("pathlib").Path({path!r}), video=True, audio=0)
dec = PacketDecoder(90_000, True)
for n, p in enumerate(packets):
    (out,) = dec.decode(J(bytes(p), n * 3000))
    rec.add_video(out, arrived=1000 + n / 30)
    if n == 150:
        print("written", flush=True)
    if n >= 150:
        time.sleep(0.01)
time.sleep(60)
"""


def test_a_recording_stays_playable_when_its_writer_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "crash.webm"
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(root=root, path=str(path))],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"written"
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    found = probe(path)
    assert found.video_frames >= 150
    assert found.duration_s >= 149 / 30 - 0.1
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == found.video_frames


def test_join_tokens_are_scoped_and_expire() -> None:
    secret = tokens.new_secret()
    now = time.time()
    sid = "0b8e4f6a-3c2d-4e1f-8a9b-7c6d5e4f3a2b"
    token = tokens.issue(secret, sid, role="applicant", now=now, expires_at=now + 60)
    assert len(token) <= tokens.MAX_TOKEN_CHARS
    claims = tokens.verify(token, secret, sid, now=now)
    assert claims.session_id == sid and claims.role == "applicant"
    cases = [
        (token, "1" * 64, sid, now, "token_invalid"),
        (token, secret, "another-session-id-0000000000000000", now, "token_wrong_session"),
        (token, secret, sid, now + 61, "token_expired"),
        ("", secret, sid, now, "token_missing"),
        ("a.b", secret, sid, now, "token_malformed"),
        ("x" * 600, secret, sid, now, "token_malformed"),
    ]
    for value, key, session, moment, code in cases:
        with pytest.raises(InspectionError) as caught:
            tokens.verify(value, key, session, now=moment)
        assert caught.value.code == code


def test_ice_servers_from_config_with_coturn_secret(tmp_path: Path) -> None:
    from inspection.hub import ice_servers
    from node.config import ConfigError, NodeConfig

    data = {
        "region": "430523",
        "name": "邵阳县",
        "url": "http://127.0.0.1:8401",
        "inspection": {
            "stun_urls": ["stun:turn.example.org:3478"],
            "turn_urls": ["turn:turn.example.org:3478?transport=udp"],
            "turn_secret": "s3cret",
        },
    }
    config = NodeConfig.from_dict(tmp_path, data)
    stun, turn = ice_servers(config.inspection, now=1_000_000)
    assert stun == {"urls": ["stun:turn.example.org:3478"]}
    assert turn["username"] == f"{1_000_000 + 12 * 3600}:tongban"
    # coturn's use-auth-secret: base64(HMAC-SHA1(secret, username))
    import base64
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(turn["credential"]) == expected
    with pytest.raises(ConfigError):
        NodeConfig.from_dict(tmp_path, {**data, "inspection": {"turn_url": "x"}})
