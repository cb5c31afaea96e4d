"""HTTP routes of the inspection area (all under ``/inspection/``).

Pages: the applicant's join page (phone) and the inspector console. JSON (staff, Bearer token
or the pages' session cookie): the session's state, snapshots, checklist, end and sign, the
evidence, and the receiving window's printable invitation with a QR code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from inspection import evidence, signalling
from inspection.errors import InspectionError
from inspection.models import inspection_items, inspection_sessions
from inspection.session import LiveSession
from node.accounts.auth import Staff, authenticate, require_role
from node.appkeys import CASES, CONFIG, DATABASE, FEDERATION, HUB
from node.cases.models import cases
from node.http_errors import ApiError
from node.pages import videos
from node.pages.qr import qr_svg
from node.pages.rendering import add_template_folder, render_page
from node.pages.session import PageAnswer, page_staff
from node.storage.blobs import blob_response

HERE = Path(__file__).resolve().parent
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
READERS = ("inspector", "approver", "supervisor", "admin")
#: Who may print the invitation (the receiving window, and the handling region's staff).
INVITERS = ("clerk", "approver", "inspector", "supervisor", "admin")
#: Who may open the console (and must be named in the session).
CONSOLE_ROLES = ("inspector", "approver")

NO_STORE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


async def page(request: web.Request, template: str, **context: Any) -> web.Response:
    """A page on the node's base layout (node/pages), never cached: join links carry tokens."""
    response = await render_page(request, template, **context)
    response.headers.update(NO_STORE)
    return response


def for_people(request: web.Request) -> bool:
    """A browser asking for a page (people get zh-CN pages, programs keep JSON errors)."""
    return "text/html" in request.headers.get("Accept", "")


def notice(status: int, title: str, message: str) -> PageAnswer:
    """A zh-CN page telling a person why (instead of a JSON error)."""
    return PageAnswer("inspection_notice.html", status, title=title, message=message)


def _name(kind: str) -> str:
    return "云见面" if kind == "meeting" else "云端勘验"


async def _query_url(request: web.Request, case_id: int, case_no: str) -> str:
    """办件查询 at the region that holds the case for the applicant: the receiving region
    (the window's node), which knows the case by its number; this node when it is both."""
    async with request.app[DATABASE].read() as conn:
        region = (
            await conn.execute(select(cases.c.receiving_region).where(cases.c.id == case_id))
        ).scalar()
    base = request.app[CONFIG].url
    if region and region != request.app[CONFIG].region:
        partner = request.app[FEDERATION].trust.partner(region)
        base = partner.url if partner is not None else base
    return f"{base.rstrip('/')}/query?case={case_no}"


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "invalid_json", "请求内容不是有效的 JSON") from None


async def _participant(request: web.Request) -> tuple[Staff, LiveSession]:
    staff = await authenticate(request)
    live = await request.app[HUB].get(request.match_info["session_id"])
    if live.staff_allowed(staff.username) is None:
        raise InspectionError("not_a_participant")
    return staff, live


def routes() -> web.RouteTableDef:
    add_template_folder(HERE / "templates")
    table = web.RouteTableDef()

    @table.get("/inspection/{session_id}/ws")
    async def ws(request: web.Request) -> web.StreamResponse:
        return await signalling.websocket(request)

    @table.get("/inspection/{session_id}/join")
    async def join_page(request: web.Request) -> web.Response:
        try:
            row = await request.app[HUB].row(request.match_info["session_id"])
        except InspectionError as exc:
            raise notice(exc.status, "无法打开视频页面", exc.message) from None
        return await page(
            request,
            "inspection_applicant.html",
            session_id=row.id,
            kind=row.kind,
            ended=row.status in ("ended", "cancelled"),
            cancelled=row.status == "cancelled",
            query_url=await _query_url(request, row.case_id, row.case_no),
        )

    @table.get("/inspection/{session_id}/console")
    async def console_page(request: web.Request) -> web.Response:
        staff = await page_staff(request, *CONSOLE_ROLES)
        try:
            row = await request.app[HUB].row(request.match_info["session_id"])
        except InspectionError as exc:
            raise notice(exc.status, "无法打开控制台", exc.message) from None
        name = _name(row.kind)
        planned = json.loads(row.participants)
        if not any(p.get("username") == staff.username for p in planned):
            raise notice(
                403,
                "无权进入控制台",
                f"您不是本次{name}的参与人员。如需参加，请由安排{name}的工作人员重新安排并选择您。",
            )
        return await page(
            request,
            "inspection_console.html",
            session_id=row.id,
            kind=row.kind,
            name=name,
            case_id=row.case_id,
            case_no=row.case_no,
            checklist=json.loads(row.checklist),
            site_address=row.site_address,
            session_status=row.status,
            ended=row.status in ("ended", "cancelled"),
            result=videos.words({"kind": row.kind})["results"].get(row.result or "", ""),
            ended_at=row.ended_at,
        )

    @table.get("/inspection/v1/sessions/{session_id}")
    async def state(request: web.Request) -> web.Response:
        _staff, live = await _participant(request)
        return web.json_response(live.state())

    @table.post("/inspection/v1/sessions/{session_id}/snapshots")
    async def take_snapshot(request: web.Request) -> web.Response:
        staff, live = await _participant(request)
        body = await _json_body(request) if request.can_read_body else {}
        if not isinstance(body, dict):
            raise InspectionError("invalid_input")
        note = body.get("note")
        index = body.get("checklist_index")
        if note is not None and (not isinstance(note, str) or len(note) > 500):
            raise InspectionError("invalid_input", "备注不超过 500 字")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise InspectionError("invalid_input", "勘验要点序号应为整数")
        picture = await live.take_snapshot(staff.username, note, index)
        return web.json_response(picture, status=201)

    @table.put("/inspection/v1/sessions/{session_id}/checklist/{index}")
    async def check(request: web.Request) -> web.Response:
        staff, live = await _participant(request)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise InspectionError("invalid_input")
        try:
            index = int(request.match_info["index"])
        except ValueError:
            raise InspectionError("invalid_input") from None
        entry = await live.set_check(index, body.get("result"), body.get("note"), staff.username)
        return web.json_response(entry)

    @table.post("/inspection/v1/sessions/{session_id}/end")
    async def end(request: web.Request) -> web.Response:
        staff, live = await _participant(request)
        summary = await evidence.finish(request.app[HUB], live, staff, await _json_body(request))
        return web.json_response(summary)

    @table.get("/inspection/v1/sessions/{session_id}/evidence")
    async def session_evidence(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, *READERS)
        row = await request.app[HUB].row(request.match_info["session_id"])
        async with request.app[DATABASE].read() as conn:
            items = (
                await conn.execute(
                    select(inspection_items)
                    .where(inspection_items.c.session_id == row.id)
                    .order_by(inspection_items.c.id)
                )
            ).all()
        return web.json_response(
            {
                "session_id": row.id,
                "status": row.status,
                "result": row.result,
                "evidence": json.loads(row.evidence) if row.evidence else None,
                "items": [
                    {
                        "kind": i.kind,
                        "sha256": i.sha256,
                        "name": i.name,
                        "media_type": i.media_type,
                        "size": i.size,
                        "taken_at": i.taken_at,
                        "data": json.loads(i.data),
                    }
                    for i in items
                ],
            }
        )

    @table.get("/inspection/v1/sessions/{session_id}/files/{sha256}")
    async def file(request: web.Request) -> web.StreamResponse:
        staff = await authenticate(request)
        require_role(staff, *READERS)
        sha256 = request.match_info["sha256"]
        if not SHA256_RE.match(sha256):
            raise ApiError(404, "file_not_found", "文件不存在")
        async with request.app[DATABASE].read() as conn:
            item = (
                await conn.execute(
                    select(inspection_items).where(
                        inspection_items.c.session_id == request.match_info["session_id"],
                        inspection_items.c.sha256 == sha256,
                    )
                )
            ).first()
        blobs = request.app[CASES].blobs
        size = await blobs.size(sha256) if item is not None else None
        if item is None or size is None:
            raise ApiError(404, "file_not_found", "文件不存在")
        headers = {"Content-Type": item.media_type, "Cache-Control": "private, max-age=3600"}
        return await blob_response(request, blobs, sha256, size=size, headers=headers)

    @table.get("/inspection/v1/cases/{case_id}/invitation")
    async def invitation(request: web.Request) -> web.Response:
        """The receiving window's printable page: the join link as a QR code."""
        people = for_people(request)
        if people:
            await page_staff(request, *INVITERS)
        else:
            require_role(await authenticate(request), *INVITERS)
        try:
            row = await _case(request)
        except ApiError as exc:
            if people:
                raise notice(exc.status, "无法打开邀请", exc.message) from None
            raise
        schedule = json.loads(row.details).get("inspection") or {}
        if not schedule.get("join_url"):
            if people:
                raise notice(404, "无法打开邀请", "该案件没有安排视频勘验或云见面。")
            raise ApiError(404, "inspection_not_scheduled", "该案件没有安排视频勘验")
        words = videos.words(schedule)
        over = words["over"] or await _session_closed(request, schedule.get("session_id"))
        label = f"{words['name']}入会二维码"
        return await page(
            request,
            "inspection_invitation.html",
            case_no=row.case_no,
            item_name=row.item_name,
            applicant=row.applicant_name,
            schedule={
                "note": None,
                "duration_minutes": None,
                "site_address": None,
                "checklist": [],
                **schedule,
            },
            words=words,
            over=over,
            qr_svg=None if over else qr_svg(schedule["join_url"], label=label, css_class="qr-code"),
        )

    @table.get("/inspection/v1/cases/{case_id}/evidence")
    async def case_evidence(request: web.Request) -> web.Response:
        """The evidence of a case's inspection as this node holds it (verified on arrival
        when it came from the partner)."""
        staff = await authenticate(request)
        require_role(staff, *READERS, "clerk")
        row = await _case(request)
        found = (json.loads(row.details).get("inspection") or {}).get("evidence")
        if not found:
            raise ApiError(404, "evidence_not_found", "尚无勘验证据")
        return web.json_response(found)

    @table.get("/inspection/v1/cases/{case_id}/sessions")
    async def case_sessions(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, *READERS)
        row = await _case(request)
        async with request.app[DATABASE].read() as conn:
            rows = (
                await conn.execute(
                    select(
                        inspection_sessions.c.id,
                        inspection_sessions.c.kind,
                        inspection_sessions.c.status,
                        inspection_sessions.c.scheduled_at,
                        inspection_sessions.c.result,
                    ).where(inspection_sessions.c.case_id == row.id)
                )
            ).all()
        return web.json_response({"sessions": [dict(r._mapping) for r in rows]})

    table.static("/inspection/static", HERE / "static")
    return table


async def _session_closed(request: web.Request, session_id: Any) -> bool:
    """Whether this node holds the session and it is over (ended, or replaced)."""
    if not isinstance(session_id, str):
        return False
    async with request.app[DATABASE].read() as conn:
        status = (
            await conn.execute(
                select(inspection_sessions.c.status).where(inspection_sessions.c.id == session_id)
            )
        ).scalar()
    return status in ("ended", "cancelled")


async def _case(request: web.Request) -> Any:
    try:
        case_id = int(request.match_info["case_id"])
    except ValueError:
        raise ApiError(404, "case_not_found", "案件不存在") from None
    async with request.app[DATABASE].read() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == case_id))).first()
    if row is None:
        raise ApiError(404, "case_not_found", "案件不存在")
    return row
