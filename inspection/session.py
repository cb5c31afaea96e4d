"""A live video session: the node is a peer of each participant.

The applicant's camera and microphone arrive as packets (see ``passthrough``); they are
recorded to WebM (Matroska) and relayed to the inspectors; the inspectors' microphone (and
camera, when they share it) are relayed to the applicant and their audio recorded too. Each
applicant connection is one recording segment: a reconnect (new peer connection, the browser's
answer to a lost network or an ICE failure) finalizes the segment and starts the next. A dead
peer is noticed by ICE consent checks (``tune_consent``) and its segment finalized at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from sqlalchemy import select, update

from inspection import passthrough
from inspection.errors import InspectionError
from inspection.media import probe_async
from inspection.models import inspection_items, inspection_sessions, inspection_token_uses
from inspection.passthrough import InlineFrames
from inspection.recorder import MatroskaRecorder
from inspection.relay import PacketTrack, forward_keyframe_requests
from inspection.snapshots import GopBuffer, snapshot, with_comment
from node.storage.blobs import BlobStore
from node.storage.database import Database

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024
#: Audio and video each way, and room for a screen share: no more m-lines than that.
MAX_MEDIA_SECTIONS = 4
MAX_SNAPSHOTS = 150
MAX_LOCATIONS = 2000
#: A keyframe request is passed to the source at most this often (seconds).
PLI_INTERVAL = 0.5

Notify = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Participant:
    key: str  # "applicant" or "staff:<username>"
    role: str
    name: str
    username: str | None = None
    resume_hash: str | None = None
    pc: RTCPeerConnection | None = None
    notify: Notify | None = None
    joined_at: float | None = None
    left_at: float | None = None
    connections: int = 0
    #: Relay tracks this participant receives, by kind.
    outgoing: dict[str, PacketTrack] = field(default_factory=dict)

    @property
    def is_staff(self) -> bool:
        return self.username is not None


def resume_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_sdp(sdp: Any) -> str:
    """A plausible SDP offer of bounded size, or InspectionError."""
    if not isinstance(sdp, str):
        raise InspectionError("sdp_malformed")
    if len(sdp.encode("utf-8", "surrogateescape")) > MAX_SDP_BYTES:
        raise InspectionError("sdp_too_large")
    if not sdp.startswith("v=0") or not 1 <= sdp.count("\nm=") <= MAX_MEDIA_SECTIONS:
        raise InspectionError("sdp_malformed")
    if any((ord(c) < 32 and c not in "\r\n\t") or ord(c) == 127 for c in sdp):
        raise InspectionError("sdp_malformed")
    return sdp


def _codec_preferences(kind: str) -> list[Any]:
    wanted = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}[kind]
    caps = RTCRtpSender.getCapabilities(kind)
    return [c for c in caps.codecs if c.mimeType.lower() in wanted]


class LiveSession:
    def __init__(
        self,
        row: Any,
        *,
        db: Database,
        blobs: BlobStore,
        directory: Path,
        ice_servers: list[RTCIceServer],
        on_empty: Callable[[LiveSession], None] | None = None,
        recording: bool = True,
    ) -> None:
        """``recording`` False: nothing is recorded (a 视频办 call without the citizen's
        consent); relay and snapshots work the same."""
        self.id: str = row.id
        self.case_id: int = row.case_id
        self.case_no: str = row.case_no
        self.xt_id: str = row.xt_id
        self.kind: str = row.kind
        self.checklist: list[str] = json.loads(row.checklist)
        self.results: dict[str, Any] = json.loads(row.results or "{}")
        self.planned: list[dict[str, Any]] = json.loads(row.participants)
        self.site_address: str | None = row.site_address
        self.scheduled_at: float = row.scheduled_at
        self.started_at: float | None = row.started_at
        self.status: str = row.status
        self.db = db
        self.blobs = blobs
        self.dir = directory
        self.ice_servers = ice_servers
        self.participants: dict[str, Participant] = {}
        self.recorder: MatroskaRecorder | None = None
        # Segments already on disk (a restart after a crash) are kept: number on from them.
        self.segment = max(
            (int(p.stem.rsplit("-", 1)[1]) for p in directory.glob("recording-[0-9]*.webm")),
            default=0,
        )
        self.gop = GopBuffer()
        self.locations: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._applicant_epoch: object = None
        self._last_pli = 0.0
        self.ended = row.status in ("ended", "cancelled")
        self.recording = recording
        #: When the applicant's first video packet went to a staff participant.
        self.first_relayed_at: float | None = None

    # -- who is here -------------------------------------------------------------------------

    def staff_allowed(self, username: str) -> dict[str, Any] | None:
        for p in self.planned:
            if p.get("username") == username:
                return p
        return None

    def applicant_name(self) -> str:
        for p in self.planned:
            if p["role"] == "applicant":
                return str(p["name"])
        return "申请人"

    def attach(self, key: str, role: str, name: str, username: str | None) -> Participant:
        participant = self.participants.get(key)
        if participant is None:
            participant = Participant(key=key, role=role, name=name, username=username)
            self.participants[key] = participant
        return participant

    async def resume(self, secret: str) -> Participant:
        """The participant a resume key was handed to (kept in the database, so that it works
        after a restart of the node too)."""
        digest = resume_hash(secret)
        for participant in self.participants.values():
            if participant.resume_hash and secrets.compare_digest(participant.resume_hash, digest):
                return participant
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    select(inspection_token_uses.c.jti).where(
                        inspection_token_uses.c.session_id == self.id,
                        inspection_token_uses.c.resume_hash == digest,
                    )
                )
            ).first()
        if found is None:
            raise InspectionError("resume_invalid")
        participant = self.attach("applicant", "applicant", self.applicant_name(), None)
        participant.resume_hash = digest
        return participant

    def event(self, what: str, **data: Any) -> None:
        self.timeline.append({"at": time.time(), "event": what, **data})

    async def broadcast(self, message: dict[str, Any], *, staff_only: bool = False) -> None:
        for participant in list(self.participants.values()):
            if participant.notify is None or (staff_only and not participant.is_staff):
                continue
            with contextlib.suppress(Exception):
                await participant.notify(message)

    # -- negotiation -------------------------------------------------------------------------

    async def accept_offer(self, participant: Participant, sdp: Any) -> str:
        """Answer ``participant``'s offer with a new peer connection (replacing any earlier
        one: this is how a reconnect or an ICE restart lands here)."""
        if self.ended:
            raise InspectionError("session_ended")
        offer = check_sdp(sdp)
        # The configured servers, possibly none: aiortc turns iceServers=None into Google's
        # public STUN server (contacted on every answer; 5 s more per answer where unreachable).
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self.ice_servers)))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as exc:  # aiortc raises ValueError, KeyError, … on bad SDP
            await pc.close()
            raise InspectionError("sdp_malformed") from exc
        incoming = passthrough.inline_frames(pc)
        async with self.lock:
            old = participant.pc
            participant.pc = pc
            participant.connections += 1
            if old is not None:
                await self._retire(participant, old, "replaced")
            try:
                self._wire(participant, pc, incoming)
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
            except Exception as exc:
                participant.pc = None
                await pc.close()
                raise InspectionError("sdp_malformed") from exc
        if self.started_at is None:
            self.started_at = time.time()
            await self._save(status="live", started_at=self.started_at)
        if participant.joined_at is None:
            participant.joined_at = time.time()
        self.event("connected", who=participant.role, connection=participant.connections)
        return str(pc.localDescription.sdp)

    def _wire(
        self,
        participant: Participant,
        pc: RTCPeerConnection,
        incoming: list[tuple[MediaStreamTrack, InlineFrames]],
    ) -> None:
        """Route what ``pc`` receives, send it what it should see. Received packets arrive by
        callback on the loop thread (``InlineFrames.consumer``): no queue and no task per
        track, which cost more per packet than the routing itself."""
        for transceiver in pc.getTransceivers():
            with contextlib.suppress(Exception):
                transceiver.setCodecPreferences(_codec_preferences(transceiver.kind))
        receivable = {
            t.kind
            for t in pc.getTransceivers()
            if getattr(t, "_offerDirection", "sendrecv") in ("sendrecv", "sendonly")
        }
        if participant.role == "applicant":
            epoch = object()
            self._applicant_epoch = epoch
            if self.recording:
                self._start_segment()
            for track, sink in incoming:
                sink.consumer = partial(
                    self._from_applicant, track.kind, participant, pc, epoch, self.recorder
                )
            for kind in ("audio", "video"):
                if kind in receivable:
                    self._send(participant, pc, kind, self._request_staff_keyframe)
        else:
            for track, sink in incoming:
                if self.recorder is not None and track.kind == "audio":
                    self.recorder.restart_audio(1)
                sink.consumer = partial(self._from_staff, track.kind, participant, pc, object())
            for kind in ("video", "audio"):
                if kind in receivable:
                    self._send(participant, pc, kind, self.request_keyframe)
            self.request_keyframe()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                await self.broadcast(
                    {"type": "peer", "who": participant.role, "state": "connected"}
                )
            if state in ("failed", "closed") and participant.pc is pc:
                await self.drop(participant, "connection_lost" if state == "failed" else "closed")

    def _send(
        self, participant: Participant, pc: RTCPeerConnection, kind: str, pli: Callable[[], None]
    ) -> None:
        old = participant.outgoing.get(kind)
        if old is not None:
            old.stop()
        track = PacketTrack(kind, pli)
        participant.outgoing[kind] = track
        sender = pc.addTrack(track)
        if kind == "video":
            forward_keyframe_requests(sender, pli)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- media -------------------------------------------------------------------------------

    def _start_segment(self) -> None:
        self._close_segment_sync()
        self.segment += 1
        path = self.dir / f"recording-{self.segment:02d}.webm"
        self.recorder = MatroskaRecorder(path, video=self.kind != "audio", audio=2)
        self.gop = GopBuffer()

    def _close_segment_sync(self) -> MatroskaRecorder | None:
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.close()
        return recorder

    def _from_applicant(
        self,
        kind: str,
        participant: Participant,
        pc: RTCPeerConnection,
        epoch: object,
        recorder: MatroskaRecorder | None,
        packet: Any,
    ) -> None:
        """One packet of the applicant's camera or microphone: relay, GOP buffer, record."""
        if participant.pc is not pc or not isinstance(packet, av.Packet):
            return  # a replaced connection's last packets, or a codec we do not pass through
        if self.recording and (recorder is None or recorder.closed):
            return
        arrived = time.time()
        for other in self.participants.values():
            if other.is_staff and kind in other.outgoing:
                other.outgoing[kind].push(packet, epoch)
                if kind == "video" and self.first_relayed_at is None:
                    self.first_relayed_at = arrived
        if kind == "video":
            data = bytes(packet)
            self.gop.add(data)
            if self.gop.overflowed:
                self.gop.overflowed = False
                self.request_keyframe()
            if recorder is not None:
                recorder.add_video(packet, arrived)
        elif recorder is not None:
            recorder.add_audio(packet, arrived, 0)

    def _from_staff(
        self,
        kind: str,
        participant: Participant,
        pc: RTCPeerConnection,
        source: object,
        packet: Any,
    ) -> None:
        """One packet of a staff member's microphone (or camera): to the applicant, and the
        audio into the recording."""
        if participant.pc is not pc or not isinstance(packet, av.Packet):
            return
        applicant = self.participants.get("applicant")
        if applicant is not None and kind in applicant.outgoing:
            applicant.outgoing[kind].push(packet, source)
        if kind == "audio" and self.recorder is not None:
            self.recorder.add_audio(packet, time.time(), 1)

    def request_keyframe(self) -> None:
        """Ask the applicant's camera for a key frame (rate-limited)."""
        now = time.monotonic()
        if now - self._last_pli < PLI_INTERVAL:
            return
        self._last_pli = now
        applicant = self.participants.get("applicant")
        if applicant is not None and applicant.pc is not None:
            self._spawn(_send_pli(applicant.pc))

    def _request_staff_keyframe(self) -> None:
        for participant in self.participants.values():
            if participant.is_staff and participant.pc is not None:
                self._spawn(_send_pli(participant.pc))

    # -- leaving -----------------------------------------------------------------------------

    async def drop(self, participant: Participant, reason: str) -> None:
        async with self.lock:
            pc = participant.pc
            if pc is None:
                return
            participant.pc = None
            await self._retire(participant, pc, reason)
        await self.broadcast({"type": "peer", "who": participant.role, "state": "left"})

    async def _retire(self, participant: Participant, pc: RTCPeerConnection, reason: str) -> None:
        participant.left_at = time.time()
        self.event("disconnected", who=participant.role, reason=reason)
        for track in participant.outgoing.values():
            track.stop()
        participant.outgoing.clear()
        if participant.role == "applicant":
            recorder = self._close_segment_sync()
            if recorder is not None:
                await self._store_recording(recorder)
        with contextlib.suppress(Exception):
            await pc.close()

    async def _store_recording(self, recorder: MatroskaRecorder) -> dict[str, Any] | None:
        """Put a finished segment in the blob store and list it as evidence."""
        path = recorder.path
        if not path.exists() or path.stat().st_size == 0:
            return None
        async with self.db.read() as conn:
            known = (
                await conn.execute(
                    select(inspection_items.c.id).where(
                        inspection_items.c.session_id == self.id,
                        inspection_items.c.name == path.name,
                    )
                )
            ).first()
        if known is not None:
            return None
        try:
            info = await probe_async(path)
        except av.FFmpegError:
            log.warning("session %s: segment %s unreadable", self.id, path.name)
            return None
        sha256, size = await _store_file(self.blobs, path)
        item = {
            "session_id": self.id,
            "kind": "recording",
            "sha256": sha256,
            "name": path.name,
            "media_type": "video/webm",
            "size": size,
            "taken_at": recorder.info.started_at or time.time(),
            "data": json.dumps(
                {
                    "duration_s": round(info.duration_s, 3),
                    "video_frames": info.video_frames,
                    "audio_packets": info.audio_packets,
                    "width": info.width,
                    "height": info.height,
                    "ended_at": recorder.info.ended_at,
                }
            ),
        }
        async with self.db.write() as conn:
            await conn.execute(inspection_items.insert().values(**item))
        log.info("session %s: recording %s stored (%d bytes)", self.id, path.name, size)
        return item

    async def store_leftover_segments(self) -> None:
        """Segments written before a crash (still playable) join the evidence."""
        for path in sorted(self.dir.glob("recording-*.webm")):
            if self.recorder is not None and self.recorder.path == path:
                continue
            recorder = MatroskaRecorder(path, video=True, audio=2)
            recorder.closed = True
            recorder.info.started_at = self.started_at or path.stat().st_mtime
            await self._store_recording(recorder)

    async def close_all(self, reason: str) -> None:
        for participant in list(self.participants.values()):
            await self.drop(participant, reason)
        for task in list(self._tasks):
            task.cancel()

    # -- evidence during the session ---------------------------------------------------------

    async def take_snapshot(
        self, actor: str, note: str | None, index: int | None
    ) -> dict[str, Any]:
        if self.ended:
            raise InspectionError("session_ended")
        if not self.gop.ready:
            self.request_keyframe()
            raise InspectionError("no_video")
        async with self.db.read() as conn:
            count = len(
                (
                    await conn.execute(
                        select(inspection_items.c.id).where(
                            inspection_items.c.session_id == self.id,
                            inspection_items.c.kind == "snapshot",
                        )
                    )
                ).all()
            )
        if count >= MAX_SNAPSHOTS:
            raise InspectionError("too_many_snapshots")
        picture = await snapshot(self.gop.copy())
        taken = time.time()
        location = self.latest_location(taken)
        where = (
            f" lat={location['latitude']} lon={location['longitude']}"
            f" accuracy_m={location['accuracy_m']}"
            if location
            else ""
        )
        jpeg = with_comment(
            picture.jpeg,
            f"tongban case={self.case_no} session={self.id} n={count + 1}"
            f" taken_at={taken:.3f}{where}",
        )
        sha256 = await self.blobs.put_bytes(jpeg)
        data = {
            "width": picture.width,
            "height": picture.height,
            "quarters": [round(q, 1) for q in picture.quarters],
            "location": location,
            "checklist_index": index,
            "note": note,
            "by": actor,
        }
        item = {
            "session_id": self.id,
            "kind": "snapshot",
            "sha256": sha256,
            "name": f"截图-{count + 1:03d}.jpg",
            "media_type": "image/jpeg",
            "size": len(jpeg),
            "taken_at": taken,
            "data": json.dumps(data, ensure_ascii=False),
        }
        async with self.db.write() as conn:
            await conn.execute(inspection_items.insert().values(**item))
        self.event("snapshot", sha256=sha256)
        public = {**item, "data": data}
        await self.broadcast({"type": "snapshot", "snapshot": public}, staff_only=True)
        return public

    def latest_location(self, at: float) -> dict[str, Any] | None:
        if not self.locations:
            return None
        last = self.locations[-1]
        return {**last, "age_s": round(at - last["at"], 1)}

    def add_location(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InspectionError("message_malformed")
        try:
            lat = float(value["latitude"])
            lon = float(value["longitude"])
            accuracy = float(value.get("accuracy") or 0)
        except (KeyError, TypeError, ValueError):
            raise InspectionError("message_malformed") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 <= accuracy < 1e6):
            raise InspectionError("message_malformed")
        entry = {
            "at": time.time(),
            "latitude": round(lat, 6),
            "longitude": round(lon, 6),
            "accuracy_m": round(accuracy, 1),
        }
        if len(self.locations) < MAX_LOCATIONS:
            self.locations.append(entry)
        else:
            self.locations[-1] = entry
        return entry

    async def set_check(self, index: Any, result: Any, note: Any, actor: str) -> dict[str, Any]:
        if self.ended:
            raise InspectionError("session_ended")
        if self.kind == "meeting":
            raise InspectionError("checklist_not_used")
        if (
            not isinstance(index, int)
            or isinstance(index, bool)
            or not 0 <= index < len(self.checklist)
            or result not in ("pass", "fail", "na")
            or (note is not None and (not isinstance(note, str) or len(note) > 500))
        ):
            raise InspectionError("invalid_input", "勘验要点、结论（pass/fail/na）或备注有误")
        entry = {"result": result, "note": note or "", "at": time.time(), "by": actor}
        self.results[str(index)] = entry
        await self._save(results=json.dumps(self.results, ensure_ascii=False))
        await self.broadcast({"type": "checklist", "index": index, **entry}, staff_only=True)
        return entry

    async def _save(self, **values: Any) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(inspection_sessions)
                .where(inspection_sessions.c.id == self.id)
                .values(**values)
            )

    def state(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "case_no": self.case_no,
            "kind": self.kind,
            "status": "ended" if self.ended else ("live" if self.started_at else "scheduled"),
            "checklist": [
                {"point": point, **(self.results.get(str(i)) or {})}
                for i, point in enumerate(self.checklist)
            ],
            "participants": [
                {
                    "role": p.role,
                    "name": p.name,
                    "connected": p.pc is not None and p.pc.connectionState == "connected",
                }
                for p in self.participants.values()
            ],
            "location": self.latest_location(time.time()),
            "segment": self.segment,
            "recording": self.recorder is not None and self.recorder.started,
        }


async def _send_pli(pc: RTCPeerConnection) -> None:
    for receiver in pc.getReceivers():
        if receiver.track is None or receiver.track.kind != "video":
            continue
        for source in receiver.getSynchronizationSources():
            with contextlib.suppress(Exception):
                await receiver._send_rtcp_pli(source.source)


async def _store_file(blobs: BlobStore, path: Path) -> tuple[str, int]:
    async def chunks() -> Any:
        with open(path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                yield chunk

    sha256, size, _created = await blobs.put_stream(chunks(), max_bytes=1 << 40)
    return sha256, size
