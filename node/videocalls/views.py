"""HTTP routes of 视频办 (all under ``/video``).

Citizens (no login): the page ``/video`` (start a call, wait in the queue, talk, rate; outside
opening hours, ask for a callback) and its JSON: start a call, the call's WebSocket, rate it,
ask for a callback. Staff: the desk (queue, pick-up), the call console (two-way video,
snapshots, 预约, 视频收件) and the supervisors' figures.

Who may call a staff route is written once, in ``STAFF_ROUTES``; ``staff_route`` registers a
handler only together with its entry, and checks it before the handler runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from inspection.errors import InspectionError
from node.accounts.auth import authenticate, require_role
from node.accounts.staff import Staff
from node.appkeys import CASES, DATABASE, VIDEO_DESK
from node.cases.validation import SHA256_RE
from node.catalog.items import get_item
from node.http_json import path_int, read_json
from node.pages.rendering import add_template_folder, render, render_page
from node.pages.session import page_staff
from node.storage.blobs import blob_response
from node.videocalls import figures, service, signalling
from node.videocalls.errors import VideoCallError
from protocol.catalog import ITEM_CODE_RE

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
DESK = ("helper", "clerk")
FIGURES = ("supervisor", "admin")

#: Who may call each staff route: the one table (tests/test_case_rules.py checks every role
#: against it). Pages answer the login form or a 403 page; JSON answers 401/403 ``forbidden``.
STAFF_ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/video/desk"): DESK,
    ("GET", "/video/calls/{call_id}/console"): DESK,
    ("GET", "/video/figures"): FIGURES,
    ("GET", "/video/v1/queue"): DESK,
    ("POST", "/video/v1/duty"): DESK,
    ("GET", "/video/v1/callbacks"): DESK,
    ("POST", "/video/v1/callbacks/{callback_id}/take"): DESK,
    ("POST", "/video/v1/calls/{call_id}/pick"): DESK,
    ("POST", "/video/v1/calls/{call_id}/snapshots"): DESK,
    ("GET", "/video/v1/calls/{call_id}/files/{sha256}"): DESK,
    ("POST", "/video/v1/calls/{call_id}/end"): DESK,
    ("POST", "/video/v1/calls/{call_id}/phone"): DESK,
    ("POST", "/video/v1/calls/{call_id}/appointment"): DESK,
    # 视频收件 opens the window's application form, which only a clerk may submit.
    ("POST", "/video/v1/calls/{call_id}/application"): ("clerk",),
    ("GET", "/video/v1/figures"): FIGURES,
}
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

StaffHandler = Callable[[web.Request, Staff], Awaitable[web.StreamResponse]]


def staff_route(
    table: web.RouteTableDef, method: str, path: str
) -> Callable[[StaffHandler], StaffHandler]:
    roles = STAFF_ROUTES[(method, path)]
    page = not path.startswith("/video/v1/")

    def register(handler: StaffHandler) -> StaffHandler:
        async def checked(request: web.Request) -> web.StreamResponse:
            if page:
                staff = await page_staff(request, *roles)
            else:
                staff = await authenticate(request)
                require_role(staff, *roles)
            return await handler(request, staff)

        table.route(method, path)(checked)
        return handler

    return register


async def _body(request: web.Request) -> Any:
    return await read_json(request) if request.can_read_body else {}


async def _may_answer(request: web.Request, staff: Staff) -> None:
    """Helpers answer calls by their role; clerks once they opted in."""
    if staff.role == "clerk" and not await service.on_duty(request.app[DATABASE], staff.username):
        raise VideoCallError("not_on_duty")


async def _own_row(request: web.Request, staff: Staff) -> Any:
    row = await service.get_call(request.app[DATABASE], request.match_info["call_id"])
    if row.clerk != staff.username:
        raise VideoCallError("not_your_call")
    return row


def routes() -> web.RouteTableDef:
    add_template_folder(HERE / "templates")
    table = web.RouteTableDef()

    # -- citizens ----------------------------------------------------------------------------

    @table.get("/video")
    async def call_page(request: web.Request) -> web.Response:
        desk = request.app[VIDEO_DESK]
        code = request.query.get("item", "").strip()[:40]
        item = await get_item(request.app[DATABASE], code) if code else None
        response = render(
            request,
            "videocalls/call.html",
            open=await desk.open_now(),
            hours=desk.settings.labels(),
            item_code=item.code if item is not None else "",
            item_name=item.name if item is not None else "",
            waiting=len(desk.queue),
        )
        response.headers.update(NO_STORE)
        return response

    @table.post("/video/v1/calls")
    async def start(request: web.Request) -> web.Response:
        asked = service.check_request(await read_json(request))
        started = await request.app[VIDEO_DESK].enqueue(asked, request.remote or "")
        return web.json_response(started, status=201, headers=NO_STORE)

    @table.get("/video/v1/calls/{call_id}/ws")
    async def ws(request: web.Request) -> web.StreamResponse:
        return await signalling.websocket(request)

    @table.post("/video/v1/calls/{call_id}/rating")
    async def rate(request: web.Request) -> web.Response:
        body = await read_json(request)
        row = await service.get_call(request.app[DATABASE], request.match_info["call_id"])
        service.check_key(row, body.get("key") if isinstance(body, dict) else None)
        given = await service.rate(request.app[DATABASE], row, body)
        return web.json_response(given, status=201)

    @table.post("/video/v1/callbacks")
    async def callback(request: web.Request) -> web.Response:
        desk = request.app[VIDEO_DESK]
        body = await read_json(request)
        if not desk.limiter.hit(request.remote or ""):
            raise VideoCallError("too_many_calls")
        number = await service.request_callback(request.app[DATABASE], desk.sealer, body)
        return web.json_response({"id": number, "hours": desk.settings.labels()}, status=201)

    # -- staff: the desk ---------------------------------------------------------------------

    @staff_route(table, "GET", "/video/desk")
    async def desk_page(request: web.Request, staff: Staff) -> web.StreamResponse:
        desk = request.app[VIDEO_DESK]
        return await render_page(
            request,
            "videocalls/desk.html",
            needs_opt_in=staff.role == "clerk",
            on_duty=staff.role == "helper"
            or await service.on_duty(request.app[DATABASE], staff.username),
            hours=desk.settings.labels(),
            open=await desk.open_now(),
        )

    @staff_route(table, "GET", "/video/v1/queue")
    async def queue(request: web.Request, staff: Staff) -> web.StreamResponse:
        desk = request.app[VIDEO_DESK]
        answering = staff.role == "helper" or await service.on_duty(
            request.app[DATABASE], staff.username
        )
        if answering:
            desk.seen[staff.username] = time.time()  # counts for the estimated waits
        now = time.time()
        waiting = [
            {
                "id": w.call_id,
                "position": index + 1,
                "waiting_s": round(now - w.created_at),
                "topic": w.topic,
                "item_code": w.item_code,
                "consent": w.consent,
                "phone": w.phone_masked,
                "connected": w.call_id in desk.citizens,
            }
            for index, w in enumerate(desk.queue.values())
        ]
        mine = [call_id for call_id, live in desk.live.items() if live.clerk == staff.username]
        return web.json_response(
            {
                "waiting": waiting,
                "mine": mine,
                "answering": desk.answering(),
                "can_answer": answering,
            },
            headers=NO_STORE,
        )

    @staff_route(table, "POST", "/video/v1/duty")
    async def duty(request: web.Request, staff: Staff) -> web.StreamResponse:
        body = await _body(request)
        on = body.get("on") if isinstance(body, dict) else None
        if not isinstance(on, bool):
            raise VideoCallError("invalid_input", "on 应为 true 或 false")
        await service.set_duty(request.app[DATABASE], staff.username, on)
        return web.json_response({"on_duty": on})

    @staff_route(table, "GET", "/video/v1/callbacks")
    async def callbacks(request: web.Request, staff: Staff) -> web.StreamResponse:
        found = await service.open_callbacks(request.app[DATABASE])
        return web.json_response({"callbacks": found}, headers=NO_STORE)

    @staff_route(table, "POST", "/video/v1/callbacks/{callback_id}/take")
    async def take_callback(request: web.Request, staff: Staff) -> web.StreamResponse:
        callback_id = path_int(request, "callback_id")
        if callback_id is None:
            raise VideoCallError("callback_not_found")
        taken = await service.take_callback(
            request.app[DATABASE], request.app[VIDEO_DESK].sealer, callback_id, staff.username
        )
        log.info("video callback %d taken by %s", callback_id, staff.username)
        return web.json_response(taken, headers=NO_STORE)

    @staff_route(table, "POST", "/video/v1/calls/{call_id}/pick")
    async def pick(request: web.Request, staff: Staff) -> web.StreamResponse:
        await _may_answer(request, staff)
        call_id = request.match_info["call_id"]
        await request.app[VIDEO_DESK].pick(call_id, staff)
        return web.json_response({"id": call_id, "console": f"/video/calls/{call_id}/console"})

    # -- staff: the call ---------------------------------------------------------------------

    @staff_route(table, "GET", "/video/calls/{call_id}/console")
    async def console(request: web.Request, staff: Staff) -> web.StreamResponse:
        try:
            row = await _own_row(request, staff)
        except VideoCallError as exc:
            return await render_page(
                request, "videocalls/notice.html", status=exc.status, message=exc.message
            )
        item = await get_item(request.app[DATABASE], row.item_code) if row.item_code else None
        return await render_page(
            request,
            "videocalls/console.html",
            call=row,
            live=row.id in request.app[VIDEO_DESK].live,
            item_name=item.name if item is not None else "",
            snapshots=await service.snapshots(request.app[DATABASE], row.id),
            can_apply=staff.role == "clerk",
        )

    @staff_route(table, "POST", "/video/v1/calls/{call_id}/snapshots")
    async def snapshot(request: web.Request, staff: Staff) -> web.StreamResponse:
        live = request.app[VIDEO_DESK].call_of(request.match_info["call_id"], staff)
        try:
            picture = await live.take_snapshot(staff.username, None, None)
        except InspectionError as exc:
            if exc.code in ("no_video", "too_many_snapshots"):
                raise
            raise VideoCallError("call_over") from None
        return web.json_response(picture, status=201)

    @staff_route(table, "GET", "/video/v1/calls/{call_id}/files/{sha256}")
    async def file(request: web.Request, staff: Staff) -> web.StreamResponse:
        row = await _own_row(request, staff)
        sha256 = request.match_info["sha256"]
        shots = {s["sha256"]: s for s in await service.snapshots(request.app[DATABASE], row.id)}
        if not SHA256_RE.match(sha256) or sha256 not in shots:
            raise VideoCallError("call_not_found", "没有这张截图")
        blobs = request.app[CASES].blobs
        return await blob_response(
            request,
            blobs,
            sha256,
            size=int(shots[sha256]["size"]),
            headers={
                "Content-Type": "image/jpeg",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
                "Content-Disposition": "inline",
            },
        )

    @staff_route(table, "POST", "/video/v1/calls/{call_id}/end")
    async def end(request: web.Request, staff: Staff) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        desk = request.app[VIDEO_DESK]
        desk.call_of(call_id, staff)
        await desk.end(call_id, "done")
        return web.json_response({"id": call_id, "status": "ended"})

    @staff_route(table, "POST", "/video/v1/calls/{call_id}/phone")
    async def phone(request: web.Request, staff: Staff) -> web.StreamResponse:
        """The citizen's callback phone in full, for the clerk who answered (to call back
        after a lost connection)."""
        row = await _own_row(request, staff)
        if not row.phone:
            raise VideoCallError("no_phone")
        log.info("video call %s: phone shown to %s", row.id, staff.username)
        number = request.app[VIDEO_DESK].sealer.open(row.phone, service.PHONE_PLACE)
        return web.json_response({"phone": number}, headers=NO_STORE)

    @staff_route(table, "POST", "/video/v1/calls/{call_id}/appointment")
    async def appointment(request: web.Request, staff: Staff) -> web.StreamResponse:
        row = await _own_row(request, staff)
        at, note = service.check_appointment(await read_json(request), now=time.time())
        await service.book_appointment(request.app[DATABASE], row.id, at, note)
        await request.app[VIDEO_DESK].tell(row.id, {"type": "appointment", "at": at, "note": note})
        return web.json_response({"at": at, "note": note}, status=201)

    @staff_route(table, "POST", "/video/v1/calls/{call_id}/application")
    async def application(request: web.Request, staff: Staff) -> web.StreamResponse:
        row = await _own_row(request, staff)
        body = await read_json(request)
        code = body.get("item_code") if isinstance(body, dict) else None
        item = None
        if isinstance(code, str) and ITEM_CODE_RE.fullmatch(code):
            item = await get_item(request.app[DATABASE], code)
        if item is None or item.retired:
            raise VideoCallError(
                "invalid_input",
                fields=[
                    {"field": "item_code", "code": "unknown_item", "message": "请选择有效的事项"}
                ],
            )
        shots = await service.snapshots(request.app[DATABASE], row.id)
        if not shots:
            raise VideoCallError("no_snapshots")
        await service.offer_uploads(
            request.app[DATABASE], row.id, shots, by=staff.username, item_code=item.code
        )
        return web.json_response(
            {"url": f"/window/items/{item.code}?call={row.id}", "files": len(shots)},
            status=201,
        )

    # -- supervisors -------------------------------------------------------------------------

    @staff_route(table, "GET", "/video/figures")
    async def figures_page(request: web.Request, staff: Staff) -> web.StreamResponse:
        shown = await figures.compute(request.app[DATABASE], request.app[VIDEO_DESK])
        return await render_page(request, "videocalls/figures.html", figures=shown)

    @staff_route(table, "GET", "/video/v1/figures")
    async def figures_json(request: web.Request, staff: Staff) -> web.StreamResponse:
        shown = await figures.compute(request.app[DATABASE], request.app[VIDEO_DESK])
        return web.json_response(shown)

    table.static("/video/static", HERE / "static")
    return table
