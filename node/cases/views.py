"""Staff and public case API (DESIGN §7): thin handlers over CaseService."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from aiohttp import web
from sqlalchemy import select

from node.accounts.auth import authenticate, require_role
from node.accounts.ratelimit import RateLimiter
from node.appkeys import DATABASE
from node.cases import public, queries
from node.cases.models import bundles, case_events, cases, uploads
from node.cases.service import CaseService, query_hash, today_in_china
from node.http_errors import ApiError
from node.storage.blobs import SHA256_RE, blob_response
from node.workdays.cache import cache_for

CASES: web.AppKey[CaseService] = web.AppKey("cases", CaseService)
CITIZEN_LIMITER: web.AppKey[RateLimiter] = web.AppKey("citizen_limiter", RateLimiter)
MAX_UPLOAD = 20 * 1024 * 1024
STAFF = ("clerk", "approver", "inspector", "supervisor", "admin")


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", "请求体不是有效的 JSON") from exc


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise ApiError(404, f"{name}_not_found", "不存在") from exc


def sniff(head: bytes) -> str | None:
    """The media type of a file from its first bytes (never trust the client's word)."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/cases")
    async def create_case(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, "clerk")
        result = await request.app[CASES].receive_application(staff, await _json(request))
        return web.json_response(result, status=201)

    @table.post("/api/v1/bundles")
    async def create_bundle(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, "clerk")
        result = await request.app[CASES].receive_bundle(staff, await _json(request))
        return web.json_response(result, status=201)

    @table.get("/api/v1/bundles/{id}")
    async def get_bundle(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, *STAFF)
        bundle_id = _int(request.match_info["id"], "bundle")
        today = today_in_china()
        async with request.app[DATABASE].read() as conn:
            bundle = (await conn.execute(select(bundles).where(bundles.c.id == bundle_id))).first()
            if bundle is None:
                raise ApiError(404, "bundle_not_found", "联办件不存在")
            rows = (
                await conn.execute(
                    select(cases).where(cases.c.bundle_id == bundle_id).order_by(cases.c.case_no)
                )
            ).all()
        parts = [queries.records.summary(r, today) for r in rows]
        return web.json_response(
            {
                "id": bundle.id,
                "bundle_no": bundle.bundle_no,
                "name": bundle.name,
                "cases": parts,
                **combined_status(parts),
            }
        )

    @table.get("/api/v1/cases")
    async def list_cases(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, *STAFF)
        params = request.query
        try:
            limit = min(200, max(1, int(params.get("limit", "50"))))
            offset = max(0, int(params.get("offset", "0")))
        except ValueError as exc:
            raise ApiError(400, "invalid_input", "分页参数应为整数") from exc
        time_status = params.get("time_status")
        if time_status not in (None, "normal", "warning", "overdue"):
            raise ApiError(400, "invalid_input", "时限状态应为 normal、warning 或 overdue")
        status = [s for s in params.get("status", "").split(",") if s] or None
        async with request.app[DATABASE].read() as conn:
            result = await queries.inbox(
                conn,
                today=today_in_china(),
                status=status,
                time_status=time_status,
                q=params.get("q"),
                partner=params.get("partner"),
                side=params.get("side"),
                region=staff.region,
                limit=limit,
                offset=offset,
            )
        return web.json_response(result)

    @table.get("/api/v1/cases/{id}")
    async def get_case(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, *STAFF)
        return web.json_response(
            await request.app[CASES].get(staff, _int(request.match_info["id"], "case"))
        )

    @table.post("/api/v1/cases/{id}/actions/{action}")
    async def act(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        payload = await _json(request) if request.can_read_body else {}
        case = await request.app[CASES].act(
            staff, _int(request.match_info["id"], "case"), request.match_info["action"], payload
        )
        return web.json_response(case)

    @table.post("/api/v1/uploads")
    async def upload(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, "clerk", "approver", "inspector")
        return web.json_response(await _store_upload(request, staff.username), status=201)

    @table.get("/api/v1/files/{sha256}")
    async def download(request: web.Request) -> web.StreamResponse:
        staff = await authenticate(request)
        require_role(staff, *STAFF)
        return await _send_file(request, request.match_info["sha256"])

    @table.get("/api/v1/supervision")
    async def supervision(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, "supervisor", "admin")
        today = today_in_china()
        async with request.app[DATABASE].read() as conn:
            board = await queries.supervision(conn, today=today)
        # Deadlines reaching into a year without the State Council's notice are provisional.
        calendar = await cache_for(request.app[DATABASE]).get()
        missing = calendar.missing_next_year(today)
        board["calendar"] = {
            "next_year_missing": missing,
            "message": f"尚未载入 {today.year + 1} 年节假日安排，跨年期限为临时计算"
            if missing
            else None,
        }
        return web.json_response(board)

    # -- citizens (no login: case number + query code, rate-limited) -----------------------

    @table.get("/api/v1/public/cases/{case_no}")
    async def citizen_case(request: web.Request) -> web.Response:
        row, events = await _citizen_case(request, request.query.get("code", ""))
        return web.json_response(public.timeline(row, events, today_in_china()))

    @table.post("/api/v1/public/applications")
    async def citizen_application(request: web.Request) -> web.Response:
        _limit(request, "apply")
        result = await request.app[CASES].receive_online(await _json(request))
        return web.json_response(result, status=201)

    @table.post("/api/v1/public/uploads")
    async def citizen_upload(request: web.Request) -> web.Response:
        _limit(request, "upload")
        return web.json_response(await _store_upload(request, "citizen"), status=201)

    @table.post("/api/v1/public/cases/{case_no}/rating")
    async def citizen_rating(request: web.Request) -> web.Response:
        payload = await _json(request)
        if not isinstance(payload, dict):
            raise ApiError(400, "invalid_input", "请求体应为 JSON 对象")
        row, _events = await _citizen_case(request, str(payload.pop("code", "")))
        service = request.app[CASES]
        payload.setdefault("channel", 2)
        await service.rate_as_citizen(row.id, payload)
        row, events = await _citizen_case(request, None, row_id=row.id)
        return web.json_response(public.timeline(row, events, today_in_china()), status=201)

    return table


def combined_status(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """多地联办: one status for the whole application."""
    finished = {"approved", "denied", "dispatched", "delivered", "not_accepted", "withdrawn"}
    done = all(p["status"] in finished for p in parts)
    labels = {"done": "全部办结", "in_progress": "办理中"}
    overall = "done" if done else "in_progress"
    return {
        "combined_status": overall,
        "combined_status_label": labels[overall],
        "parts_done": sum(p["status"] in finished for p in parts),
        "parts": len(parts),
    }


def _limit(request: web.Request, what: str) -> None:
    if not request.app[CITIZEN_LIMITER].hit(f"{what}:{request.remote}"):
        raise ApiError(429, "rate_limited", "操作过于频繁，请稍后再试")


async def _citizen_case(
    request: web.Request, code: str | None, row_id: int | None = None
) -> tuple[Any, list[Any]]:
    case_no = request.match_info["case_no"]
    if row_id is None:
        limiter = request.app[CITIZEN_LIMITER]
        if not limiter.hit(f"ip:{request.remote}") or not limiter.hit(f"case:{case_no}"):
            raise ApiError(429, "rate_limited", "查询过于频繁，请稍后再试")
    async with request.app[DATABASE].read() as conn:
        where = cases.c.id == row_id if row_id is not None else cases.c.case_no == case_no
        row = (await conn.execute(select(cases).where(where))).first()
        if row_id is None:
            expected = row.query_hash if row is not None and row.query_hash else "0" * 64
            if row is None or not hmac.compare_digest(query_hash(case_no, code or ""), expected):
                raise ApiError(404, "case_not_found", "未找到案件，请核对受理编号和查询码")
        events = (
            await conn.execute(
                select(case_events)
                .where(case_events.c.case_id == row.id)
                .order_by(case_events.c.seq)
            )
        ).all()
    return row, list(events)


async def _store_upload(request: web.Request, actor: str) -> dict[str, Any]:
    name = request.headers.get("X-File-Name", "upload")
    from urllib.parse import unquote

    name = unquote(name)[:200] or "upload"
    if (request.content_length or 0) > MAX_UPLOAD:
        raise ApiError(413, "file_too_large", "文件不能超过 20 MB")
    head = b""

    async def chunks() -> Any:
        nonlocal head
        async for chunk in request.content.iter_chunked(256 * 1024):
            if len(head) < 16:
                head += chunk[:16]
            yield chunk

    blobs = request.app[CASES].blobs
    try:
        sha256, size, _created = await blobs.put_stream(chunks(), max_bytes=MAX_UPLOAD)
    except Exception as exc:
        if getattr(exc, "code", None) == "blob_too_large":
            raise ApiError(413, "file_too_large", "文件不能超过 20 MB") from exc
        raise
    media_type = sniff(head)
    if media_type is None:
        raise ApiError(415, "file_type_not_accepted", "只接受 PDF、JPG、PNG 文件")
    async with request.app[DATABASE].write() as conn:
        exists = (
            await conn.execute(select(uploads.c.sha256).where(uploads.c.sha256 == sha256))
        ).first()
        if exists is None:
            await conn.execute(
                uploads.insert().values(
                    sha256=sha256,
                    media_type=media_type,
                    size=size,
                    name=name,
                    uploaded_at=time.time(),
                    uploaded_by=actor,
                )
            )
    return {"sha256": sha256, "size": size, "media_type": media_type, "name": name}


async def _send_file(request: web.Request, sha256: str) -> web.StreamResponse:
    if not SHA256_RE.match(sha256):
        raise ApiError(404, "file_not_found", "文件不存在")
    async with request.app[DATABASE].read() as conn:
        row = (await conn.execute(select(uploads).where(uploads.c.sha256 == sha256))).first()
    blobs = request.app[CASES].blobs
    size = await blobs.size(sha256) if row is not None else None
    if row is None or size is None:
        raise ApiError(404, "file_not_found", "文件不存在")
    headers = {"Content-Type": row.media_type, "Cache-Control": "private, max-age=3600"}
    return await blob_response(request, blobs, sha256, size=size, headers=headers)
