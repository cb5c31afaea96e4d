"""Signalling over a WebSocket: ``/inspection/{session_id}/ws``.

Messages are JSON objects with a ``type``. The first must be ``join``:
- the applicant: ``{"type": "join", "token": "<one-time join token>"}``, or after a lost
  connection ``{"type": "join", "resume": "<resume key from the first join>"}``;
- staff: ``{"type": "join", "auth": "<staff bearer token>"}``, or the pages' session cookie
  (then the Origin must be this node).
The node answers ``{"type": "joined", "role", "name", "resume"?, "ice_servers", "session"}``.
Then: ``offer`` (``sdp``; the node answers ``answer``; a new offer replaces the peer
connection: that is how reconnects and ICE restarts happen), ``location`` (the applicant's
``latitude``/``longitude``/``accuracy``, given with consent), ``ping``, ``bye``.
Refusals are ``{"type": "error", "code", "detail"}`` with a stable code; a refused message
changes nothing. Limits: frame size, SDP size, and a message rate per connection (a flood
closes the socket with 4429 after ``rate_limited``).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from sqlalchemy.exc import IntegrityError

from inspection import tokens
from inspection.errors import CODES, InspectionError
from inspection.hub import ice_servers
from inspection.models import inspection_token_uses
from inspection.session import LiveSession, Participant, resume_hash
from node.accounts import service as accounts
from node.accounts import sessions
from node.accounts.auth import Staff
from node.appkeys import CONFIG, DATABASE, HUB
from node.http_errors import ApiError

log = logging.getLogger(__name__)

MAX_FRAME = 96 * 1024
#: Token bucket per connection: sustained messages per second and burst.
RATE = 5.0
BURST = 30.0
JOIN_TIMEOUT = 15.0
STAFF_ROLES = ("inspector", "approver")


class Bucket:
    def __init__(self, rate: float = RATE, burst: float = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _error(code: str, detail: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail or CODES.get(code, (0, code))[1]}


async def staff_from_token(request: web.Request, token: Any) -> Staff:
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise InspectionError("unauthorized")
    try:
        return await accounts.decode_token(request.app[DATABASE], token, request.app[CONFIG].region)
    except accounts.InvalidToken:
        raise InspectionError("unauthorized") from None


async def staff_from_cookie(request: web.Request) -> Staff | None:
    """The pages' session cookie, for a WebSocket opened by this node's own page."""
    origin = request.headers.get("Origin")
    if origin is None or urlsplit(origin).netloc != request.host:
        return None
    return await sessions.cookie_staff(request)


async def use_token(request: web.Request, live: LiveSession, token: Any) -> str:
    """Check a join token and mark it used (once, ever); returns the resume key for later
    reconnects of this participant."""
    hub = request.app[HUB]
    row = await hub.row(live.id)
    claims = tokens.verify(
        token if isinstance(token, str) else "", row.token_secret, live.id, now=time.time()
    )
    resume = secrets.token_urlsafe(24)
    try:
        async with request.app[DATABASE].write() as conn:
            await conn.execute(
                inspection_token_uses.insert().values(
                    jti=claims.jti,
                    session_id=live.id,
                    used_at=time.time(),
                    resume_hash=resume_hash(resume),
                )
            )
    except IntegrityError:
        raise InspectionError("token_used") from None
    return resume


async def join(
    request: web.Request, live: LiveSession, message: dict[str, Any], cookie_staff: Staff | None
) -> tuple[Participant, str | None]:
    if "resume" in message:
        resume = message["resume"]
        if not isinstance(resume, str) or len(resume) > 200:
            raise InspectionError("resume_invalid")
        return await live.resume(resume), None
    if "token" in message:
        key = await use_token(request, live, message["token"])
        participant = live.attach("applicant", "applicant", live.applicant_name(), None)
        participant.resume_hash = resume_hash(key)
        return participant, key
    staff = await staff_from_token(request, message["auth"]) if "auth" in message else cookie_staff
    if staff is None:
        raise InspectionError("token_missing")
    planned = live.staff_allowed(staff.username)
    if planned is None or staff.role not in STAFF_ROLES:
        raise InspectionError("not_a_participant")
    participant = live.attach(
        f"staff:{staff.username}", planned["role"], staff.display_name, staff.username
    )
    return participant, None


async def websocket(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[HUB]
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=10.0)
    await ws.prepare(request)
    bucket = Bucket()
    participant: Participant | None = None
    live: LiveSession | None = None

    async def send(message: dict[str, Any]) -> None:
        if not ws.closed:
            await ws.send_str(json.dumps(message, ensure_ascii=False))

    try:
        try:
            live = await hub.get(request.match_info["session_id"])
        except InspectionError as exc:
            await send(_error(exc.code))
            await ws.close(code=4404)
            return ws
        cookie_staff = await staff_from_cookie(request)
        while True:
            try:
                msg = await ws.receive(timeout=None if participant else JOIN_TIMEOUT)
            except TimeoutError:
                await send(_error("join_first"))
                break
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if msg.type == WSMsgType.ERROR:
                break
            if not bucket.take():
                await send(_error("rate_limited"))
                await ws.close(code=4429, message=b"rate_limited")
                break
            if msg.type != WSMsgType.TEXT:
                await send(_error("message_malformed"))
                continue
            try:
                message = json.loads(msg.data)
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    raise ValueError
            except ValueError:
                await send(_error("message_malformed"))
                continue
            try:
                participant = await _handle(request, live, participant, message, cookie_staff, send)
            except InspectionError as exc:
                await send(_error(exc.code, exc.message))
                if exc.code in ("session_ended",) or (
                    participant is None and exc.status in (401, 403, 409)
                ):
                    await ws.close(code=4400 + (exc.status % 100))
                    break
            except ApiError as exc:
                await send(_error(exc.code, exc.message))
            if message.get("type") == "bye":
                break
    finally:
        if participant is not None and participant.notify is send:
            participant.notify = None
        if not ws.closed:
            await ws.close()
    return ws


async def _handle(
    request: web.Request,
    live: LiveSession,
    participant: Participant | None,
    message: dict[str, Any],
    cookie_staff: Staff | None,
    send: Any,
) -> Participant | None:
    kind = message["type"]
    if kind == "join":
        if participant is not None:
            raise InspectionError("message_malformed", "已经加入")
        if live.ended:
            raise InspectionError("session_ended")
        participant, resume = await join(request, live, message, cookie_staff)
        participant.notify = send
        servers = ice_servers(request.app[CONFIG].inspection)
        joined: dict[str, Any] = {
            "type": "joined",
            "role": participant.role,
            "name": participant.name,
            "ice_servers": servers,
            "session": live.state(),
        }
        if resume:
            joined["resume"] = resume
        await send(joined)
        await live.broadcast(
            {"type": "peer", "who": participant.role, "state": "joined"}, staff_only=True
        )
        return participant
    if participant is None:
        raise InspectionError("join_first")
    if kind == "offer":
        answer = await live.accept_offer(participant, message.get("sdp"))
        await send({"type": "answer", "sdp": answer})
    elif kind == "location":
        if participant.role != "applicant":
            raise InspectionError("unknown_message")
        entry = live.add_location(message)
        await live.broadcast({"type": "location", **entry}, staff_only=True)
    elif kind == "ping":
        await send({"type": "pong"})
    elif kind == "state":
        await send({"type": "state", "session": live.state()})
    elif kind == "bye":
        await live.drop(participant, "left")
    else:
        raise InspectionError("unknown_message")
    return participant
