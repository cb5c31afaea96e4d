"""Signalling of a call over a WebSocket: ``/video/v1/calls/{call_id}/ws``.

The same shape as the inspection's (inspection/signalling.py, whose limits and token bucket
are reused): JSON messages with a ``type``, the first one ``join``:

- the citizen: ``{"type": "join", "key": "<call key>"}``; while waiting the node pushes
  ``queue`` (position, estimated wait) on every change of the queue, then ``picked`` when a
  clerk answers; the citizen then sends ``offer`` and gets ``answer``. ``bye`` (离开排队,
  挂断) or a close frame leaves the queue at once; a socket lost without one (the network,
  the heartbeat timing out) or closed as "going away" (1001: the page reloaded or closed)
  keeps the place for ``desk.REJOIN_WITHIN`` seconds, for the page to join again with the
  key (then, in a call, a new offer if its media failed too).
- the clerk who answered: the pages' session cookie (Origin this node) or ``"auth"``: a staff
  bearer token.

Then ``offer`` → ``answer`` (a new offer replaces the peer connection), ``ping`` → ``pong``,
``bye``. The node pushes ``peer``, ``snapshot``, ``appointment`` and ``ended``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from inspection.errors import InspectionError
from inspection.hub import ice_servers
from inspection.session import Participant
from inspection.signalling import (
    JOIN_TIMEOUT,
    MAX_FRAME,
    Bucket,
    staff_from_cookie,
    staff_from_token,
)
from node.accounts.staff import Staff
from node.appkeys import CONFIG, VIDEO_DESK
from node.http_errors import ApiError
from node.videocalls import service
from node.videocalls.desk import CITIZEN, CallDesk
from node.videocalls.errors import CODES, VideoCallError

log = logging.getLogger(__name__)

#: Seconds between the aiohttp heartbeat pings: a citizen whose page vanished without closing
#: its socket leaves the queue when a pong is missing (about twice this).
HEARTBEAT = 10.0
DESK_ROLES = ("helper", "clerk")


def _error(code: str, detail: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail or CODES.get(code, (0, code))[1]}


class Connection:
    """One socket: who it is (citizen or clerk) once joined."""

    def __init__(self, request: web.Request, call_id: str, send: Any) -> None:
        self.request = request
        self.desk: CallDesk = request.app[VIDEO_DESK]
        self.call_id = call_id
        self.send = send
        self.citizen = False
        self.staff: Staff | None = None
        self.participant: Participant | None = None

    @property
    def joined(self) -> bool:
        return self.citizen or self.staff is not None

    async def join(self, message: dict[str, Any], cookie: Staff | None) -> None:
        """The citizen (with the call's ``key``) or the clerk who answered joins."""
        row = await service.get_call(self.desk.db, self.call_id)
        servers = ice_servers(self.request.app[CONFIG].inspection)
        if "key" in message:
            await self._join_citizen(row, message["key"], servers)
        else:
            await self._join_staff(row, message, cookie, servers)

    async def _join_citizen(self, row: Any, key: Any, servers: list[dict[str, Any]]) -> None:
        service.check_key(row, key)
        if row.status in service.OVER or (
            row.status == "active" and self.call_id not in self.desk.live
        ):
            raise VideoCallError("call_over")
        if self.call_id in self.desk.citizens:
            # The same call opened in another tab: the older page is told, this one wins.
            await self.desk.citizens[self.call_id](_error("call_over", "已在其他页面打开"))
        self.citizen = True
        self.desk.citizens[self.call_id] = self.send
        self.desk.citizen_back(self.call_id)
        position = self.desk.position(self.call_id)
        await self.send(
            {
                "type": "joined",
                "role": "citizen",
                "status": row.status,
                "position": position,
                "estimate_s": await self.desk.estimate(position) if position else 0,
                "consent": bool(row.consent),
                "clerk_name": row.clerk_name,
                "ice_servers": servers,
            }
        )

    async def _join_staff(
        self,
        row: Any,
        message: dict[str, Any],
        cookie: Staff | None,
        servers: list[dict[str, Any]],
    ) -> None:
        staff = (
            await staff_from_token(self.request, message["auth"]) if "auth" in message else cookie
        )
        if staff is None:
            raise VideoCallError("unauthorized")
        if staff.role not in DESK_ROLES:
            raise VideoCallError("forbidden")
        live = self.desk.call_of(self.call_id, staff)
        self.staff = staff
        self.participant = live.attach(
            f"staff:{staff.username}", "staff", staff.display_name, staff.username
        )
        self.participant.notify = self.send
        citizen = live.participants.get(CITIZEN)
        await self.send(
            {
                "type": "joined",
                "role": "staff",
                "status": row.status,
                "consent": bool(row.consent),
                "citizen_here": citizen is not None and citizen.pc is not None,
                "ice_servers": servers,
            }
        )

    async def offer(self, sdp: Any) -> None:
        live = self.desk.live.get(self.call_id)
        if live is None:
            raise VideoCallError("not_picked" if self.citizen else "call_over")
        if self.citizen:
            participant = live.attach(CITIZEN, CITIZEN, "群众", None)
            participant.notify = self.send
        else:
            assert self.participant is not None
            participant = self.participant
        answer = await live.accept_offer(participant, sdp)
        await self.send({"type": "answer", "sdp": answer})

    async def handle(self, message: dict[str, Any], cookie: Staff | None) -> bool:
        """One message; False when the socket should close."""
        kind = message["type"]
        if kind == "join":
            if self.joined:
                raise VideoCallError("message_malformed", "已经加入")
            await self.join(message, cookie)
        elif not self.joined:
            raise VideoCallError("join_first")
        elif kind == "offer":
            await self.offer(message.get("sdp"))
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "bye":
            if self.citizen and self.call_id in self.desk.live:
                await self.desk.end(self.call_id, "citizen_hung_up")
            return False
        else:
            raise VideoCallError("unknown_message")
        return True

    async def closed(self, *, lost: bool) -> None:
        """The socket is over; ``lost``: without a close frame from the page (its network
        went, or it stopped answering heartbeats), so the citizen may come back."""
        if self.citizen and self.desk.citizens.get(self.call_id) is self.send:
            if lost:
                self.desk.citizen_lost(self.call_id)
            else:
                await self.desk.citizen_left(self.call_id, "left")
        elif self.staff is not None and self.participant is not None:
            live = self.desk.live.get(self.call_id)
            if self.participant.notify is self.send:
                self.participant.notify = None
            if live is not None:
                await live.drop(self.participant, "left")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=HEARTBEAT)
    await ws.prepare(request)
    bucket = Bucket()

    async def send(message: dict[str, Any]) -> None:
        if not ws.closed:
            await ws.send_str(json.dumps(message, ensure_ascii=False))

    conn = Connection(request, request.match_info["call_id"], send)
    cookie = await staff_from_cookie(request)
    # Until the page closes the socket itself (a close frame other than "going away"),
    # says bye, or is sent away.
    lost = True
    try:
        while True:
            try:
                msg = await ws.receive(timeout=None if conn.joined else JOIN_TIMEOUT)
            except TimeoutError:
                await send(_error("join_first"))
                lost = False
                break
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.CLOSE:
                    # 1001: the page is going away (reloaded, left, or its tab closed): its
                    # citizen may be back in a moment, the call's key kept in the tab.
                    lost = msg.data == WSCloseCode.GOING_AWAY
                    break
                if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                await send(_error("message_malformed"))
                continue
            if not bucket.take():
                await send(_error("rate_limited"))
                await ws.close(code=4429, message=b"rate_limited")
                lost = False
                break
            try:
                message = json.loads(msg.data)
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    raise ValueError
            except ValueError:
                await send(_error("message_malformed"))
                continue
            try:
                if not await conn.handle(message, cookie):
                    lost = False
                    break
            except (VideoCallError, InspectionError, ApiError) as exc:
                await send(_error(exc.code, exc.message))
                if not conn.joined:
                    await ws.close(code=4400 + (exc.status % 100))
                    lost = False
                    break
    finally:
        await conn.closed(lost=lost)
        if not ws.closed:
            await ws.close()
    return ws
