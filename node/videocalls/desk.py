"""The hall's video desk: the queue of waiting citizens and the calls in progress.

The queue lives in this process (its order, who is connected); every change of a call is also
a row (``video_calls``, through ``service``), so figures and ratings survive a restart, and
calls left waiting by a stopped node are marked ``expired`` at the next start. One node process
serves the queue (docs/videocalls.md, "Limits").

A call in progress is a ``LiveSession`` of the video inspection (inspection/session.py): the
node is a peer of the citizen and of the clerk, relays each one's packets to the other without
transcoding, keeps the citizen's last group of pictures for full-resolution snapshots, and
records only when the citizen consented.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from inspection.hub import aiortc_servers, ice_servers
from inspection.session import LiveSession
from node.accounts.ratelimit import RateLimiter
from node.accounts.staff import Staff
from node.cases.personal import mask_phone
from node.clock import CHINA
from node.config import InspectionSettings
from node.storage.blobs import BlobStore
from node.storage.database import Database
from node.storage.sealing import SealsValues
from node.videocalls import service
from node.videocalls.errors import VideoCallError
from node.videocalls.settings import VideoCallSettings
from node.workdays.cache import cache_for

log = logging.getLogger(__name__)

Notify = Callable[[dict[str, Any]], Awaitable[None]]
#: Seconds a call is assumed to take before any was answered here.
DEFAULT_HANDLING_S = 300.0
#: Staff who looked at the queue this recently count as answering calls.
DESK_SEEN_S = 60.0
#: Recent handling times are read from the database at most this often.
HANDLING_CACHE_S = 30.0
#: The citizen's participant key and role in the shared LiveSession.
CITIZEN = "applicant"
#: Seconds a new call waits for its citizen's socket; a call nobody joins leaves the queue
#: (a script that starts calls without a page cannot hold places).
JOIN_WITHIN = 15.0
#: Seconds a citizen whose socket was lost (no close frame: a phone between networks, a
#: tunnel, a page that stopped answering heartbeats) keeps a place in the queue or in the
#: call, so that the page can come back with the call's key. Closing the page, a reload or
#: ``bye`` send a close frame and leave at once.
REJOIN_WITHIN = 20.0


class CallSession(LiveSession):
    """A LiveSession whose row is a call: its state is written by the desk, not by the
    session (which writes ``inspection_sessions`` for inspections)."""

    def __init__(self, row: Any, *, clerk: str, **kwargs: Any) -> None:
        super().__init__(row, **kwargs)
        #: The username of the staff member who answered: the only one who may join.
        self.clerk = clerk

    async def _save(self, **values: Any) -> None:
        return None


def _session_row(call_id: str, created_at: float) -> SimpleNamespace:
    """What a LiveSession reads of its ``inspection_sessions`` row, for a call (which has no
    case and no such row: snapshots are kept under the call's id)."""
    return SimpleNamespace(
        id=call_id,
        case_id=0,
        case_no="video-call",
        xt_id="",
        kind="call",
        checklist="[]",
        results="{}",
        participants="[]",
        site_address=None,
        scheduled_at=created_at,
        started_at=None,
        status="live",
    )


@dataclass
class Waiting:
    call_id: str
    created_at: float
    consent: bool
    item_code: str | None
    topic: str | None
    phone_masked: str | None


class CallDesk:
    def __init__(
        self,
        *,
        db: Database,
        blobs: BlobStore,
        root: Path,
        settings: VideoCallSettings,
        media: InspectionSettings,
        sealer: SealsValues,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.root = root
        self.settings = settings
        self.media = media
        self.sealer = sealer
        self.queue: OrderedDict[str, Waiting] = OrderedDict()
        self.live: dict[str, CallSession] = {}
        #: The citizen's socket of each call (waiting or in progress).
        self.citizens: dict[str, Notify] = {}
        self.limiter = RateLimiter(
            rate_per_minute=settings.client_calls_per_hour / 60.0,
            burst=settings.client_calls_burst,
        )
        self.seen: dict[str, float] = {}
        self._handling: tuple[float, float] = (0.0, DEFAULT_HANDLING_S)
        self.join_within = JOIN_WITHIN
        self.rejoin_within = REJOIN_WITHIN
        #: Calls whose citizen's socket was lost, with the task that ends the wait for them.
        self.away: dict[str, asyncio.Task[None]] = {}
        self._starting = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await service.expire_leftovers(self.db, now=time.time())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for call_id in list(self.live):
            with contextlib.suppress(Exception):
                await self.end(call_id, "node_stopping")

    # -- the queue ---------------------------------------------------------------------------

    async def open_now(self, now: float | None = None) -> bool:
        """Within the opening hours (China time; ``workdays`` by the node's holiday
        calendar, the one deadlines are computed with)."""
        moment = datetime.fromtimestamp(time.time() if now is None else now, CHINA)
        calendar = await cache_for(self.db).get()
        return self.settings.open_at(moment, calendar.is_working_day)

    async def enqueue(self, asked: service.Request, client: str) -> dict[str, Any]:
        """A citizen starts a call. Checked in this order, each refusal changing nothing:
        opening hours, room in the queue, the client's budget."""
        if not await self.open_now():
            raise VideoCallError("outside_hours")
        if len(self.queue) + self._starting >= self.settings.max_queue:
            raise VideoCallError("queue_full")
        if not self.limiter.hit(client):
            raise VideoCallError("too_many_calls")
        now = time.time()
        # The place is held while the row is written, so that calls started at the same
        # moment cannot together pass the bound.
        self._starting += 1
        try:
            call_id, key = await service.create_call(self.db, self.sealer, asked, now=now)
        finally:
            self._starting -= 1
        self.queue[call_id] = Waiting(
            call_id,
            now,
            asked.consent,
            asked.item_code,
            asked.topic,
            mask_phone(asked.phone) if asked.phone else None,
        )
        log.info("video call %s waiting (queue %d)", call_id, len(self.queue))
        task = asyncio.ensure_future(self._unless_joined(call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        position = len(self.queue)
        await self.announce()
        return {
            "id": call_id,
            "key": key,
            "position": position,
            "estimate_s": await self.estimate(position),
        }

    async def _unless_joined(self, call_id: str) -> None:
        await asyncio.sleep(self.join_within)
        if call_id in self.queue and call_id not in self.citizens:
            await self.citizen_left(call_id, "never_joined")

    def position(self, call_id: str) -> int | None:
        for index, queued_id in enumerate(self.queue):
            if queued_id == call_id:
                return index + 1
        return None

    def answering(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return sum(1 for at in self.seen.values() if now - at <= DESK_SEEN_S)

    async def handling_s(self) -> float:
        at, value = self._handling
        if time.monotonic() - at > HANDLING_CACHE_S:
            value = await service.recent_handling(self.db) or DEFAULT_HANDLING_S
            self._handling = (time.monotonic(), value)
        return value

    async def estimate(self, position: int) -> int:
        """Seconds until a citizen at ``position`` is answered, at most: one recent handling
        time per citizen up to and including them, shared among the staff at the desk."""
        desks = max(1, self.answering())
        return math.ceil(position * await self.handling_s() / desks)

    async def announce(self) -> None:
        """Tell every waiting citizen their position and estimated wait."""
        for index, call_id in enumerate(list(self.queue)):
            notify = self.citizens.get(call_id)
            if notify is None:
                continue
            with contextlib.suppress(Exception):
                await notify(
                    {
                        "type": "queue",
                        "position": index + 1,
                        "estimate_s": await self.estimate(index + 1),
                        "waiting": len(self.queue),
                    }
                )

    def citizen_lost(self, call_id: str) -> None:
        """The citizen's socket was lost without a close frame: the place is kept (in the
        queue, or in the call: the media may well still flow) for ``rejoin_within`` seconds,
        then the citizen has left (``connection_lost``) unless the page came back."""
        self.citizens.pop(call_id, None)
        if call_id in self.away:
            return
        task = asyncio.ensure_future(self._unless_back(call_id))
        self.away[call_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("video call %s: the citizen's connection was lost; waiting for it", call_id)

    def citizen_back(self, call_id: str) -> None:
        """The citizen's page joined again: nothing is left."""
        task = self.away.pop(call_id, None)
        if task is not None:
            task.cancel()
            log.info("video call %s: the citizen is back", call_id)

    async def _unless_back(self, call_id: str) -> None:
        try:
            await asyncio.sleep(self.rejoin_within)
        finally:
            if self.away.get(call_id) is asyncio.current_task():
                del self.away[call_id]
        if call_id not in self.citizens:
            await self.citizen_left(call_id, "connection_lost")

    async def citizen_left(self, call_id: str, reason: str) -> None:
        """The citizen's socket closed (or said bye): a waiting call leaves the queue; in a
        call, the citizen's peer is dropped and the clerk told."""
        self.citizens.pop(call_id, None)
        if self.queue.pop(call_id, None) is not None:
            await service.set_status(
                self.db,
                call_id,
                frm=("waiting",),
                status="left",
                ended_at=time.time(),
                end_reason=reason,
            )
            log.info("video call %s left the queue (%s)", call_id, reason)
            await self.announce()
            return
        live = self.live.get(call_id)
        if live is not None and CITIZEN in live.participants:
            participant = live.participants[CITIZEN]
            participant.notify = None
            await live.drop(participant, reason)

    # -- calls -------------------------------------------------------------------------------

    async def pick(self, call_id: str, staff: Staff) -> CallSession:
        """A clerk answers a waiting call (one winner when two try at once)."""
        # Taken out of the queue before anything is awaited: in this process that is the
        # lock (a second pick, or the citizen leaving meanwhile, finds it gone); the row's
        # conditional update is the same rule in the database.
        waiting = self.queue.pop(call_id, None)
        if waiting is None:
            await service.get_call(self.db, call_id)  # call_not_found first
            raise VideoCallError("call_taken")
        won = await service.set_status(
            self.db,
            call_id,
            frm=("waiting",),
            status="active",
            picked_at=time.time(),
            clerk=staff.username,
            clerk_name=staff.display_name,
        )
        if not won:
            raise VideoCallError("call_taken")
        live = CallSession(
            _session_row(call_id, waiting.created_at),
            clerk=staff.username,
            db=self.db,
            blobs=self.blobs,
            directory=self.root / call_id,
            ice_servers=aiortc_servers(ice_servers(self.media)),
            recording=waiting.consent,
        )
        self.live[call_id] = live
        log.info("video call %s picked up", call_id)
        notify = self.citizens.get(call_id)
        if notify is not None:
            with contextlib.suppress(Exception):
                await notify({"type": "picked", "name": staff.display_name})
        await self.announce()
        return live

    def call_of(self, call_id: str, staff: Staff | None = None) -> CallSession:
        live = self.live.get(call_id)
        if live is None:
            raise VideoCallError("call_over")
        if staff is not None and live.clerk != staff.username:
            raise VideoCallError("not_your_call")
        return live

    async def tell(self, call_id: str, message: dict[str, Any]) -> None:
        """Push ``message`` to everyone in the call: the staff and the citizen's page (which
        may not have offered its media yet)."""
        live = self.live.get(call_id)
        sockets: list[Notify] = []
        if live is not None:
            sockets += [p.notify for p in live.participants.values() if p.notify is not None]
        citizen = self.citizens.get(call_id)
        if citizen is not None and citizen not in sockets:
            sockets.append(citizen)
        for notify in sockets:
            with contextlib.suppress(Exception):
                await notify(message)

    async def end(self, call_id: str, reason: str) -> None:
        live = self.live.get(call_id)
        if live is None:
            raise VideoCallError("call_over")
        live.ended = True
        await service.set_status(
            self.db,
            call_id,
            frm=("active",),
            status="ended",
            ended_at=time.time(),
            end_reason=reason,
            connected_at=live.first_relayed_at,
        )
        await self.tell(call_id, {"type": "ended", "reason": reason})
        self.live.pop(call_id, None)
        await live.close_all(reason)
        self.citizens.pop(call_id, None)
        log.info("video call %s ended (%s)", call_id, reason)
