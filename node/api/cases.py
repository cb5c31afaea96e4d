"""The staff case API (docs/cases.md): thin handlers over the case front (CaseService)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from node.accounts.auth import Staff, authenticate, require_role
from node.appkeys import CASES, DATABASE
from node.cases import queries, records
from node.cases.actor import Actor
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.models import bundles, cases
from node.clock import today_in_china
from node.http_errors import ApiError
from node.http_json import path_int, query_int, read_json
from node.workdays.cache import cache_for

STAFF = ("clerk", "approver", "inspector", "supervisor", "admin")
#: Most rows one inbox page may skip (deeper pages are never shown; a filter finds them).
MAX_OFFSET = 1_000_000


def row_id(request: web.Request, missing: CaseErrorCode) -> int:
    """The ``{id}`` of the path; one that cannot name a row is a resource that does not exist."""
    value = path_int(request, "id")
    if value is None:
        raise CaseError(missing, "不存在")
    return value


async def staff_actor(request: web.Request, *roles: str) -> tuple[Staff, Actor]:
    staff = await authenticate(request)
    if roles:
        require_role(staff, *roles)
    return staff, Actor.of_staff(staff)


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/cases")
    async def create_case(request: web.Request) -> web.Response:
        _staff, actor = await staff_actor(request, "clerk")
        result = await request.app[CASES].receive_application(actor, await read_json(request))
        return web.json_response(result, status=201)

    @table.post("/api/v1/bundles")
    async def create_bundle(request: web.Request) -> web.Response:
        _staff, actor = await staff_actor(request, "clerk")
        result = await request.app[CASES].receive_bundle(actor, await read_json(request))
        return web.json_response(result, status=201)

    @table.get("/api/v1/bundles/{id}")
    async def get_bundle(request: web.Request) -> web.Response:
        await staff_actor(request, *STAFF)
        bundle_id = row_id(request, CaseErrorCode.BUNDLE_NOT_FOUND)
        today = today_in_china()
        async with request.app[DATABASE].read() as conn:
            bundle = (await conn.execute(select(bundles).where(bundles.c.id == bundle_id))).first()
            if bundle is None:
                raise CaseError(CaseErrorCode.BUNDLE_NOT_FOUND, "联办件不存在")
            rows = (
                await conn.execute(
                    select(cases).where(cases.c.bundle_id == bundle_id).order_by(cases.c.case_no)
                )
            ).all()
        parts = [records.summary(r, today) for r in rows]
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
        staff, _actor = await staff_actor(request, *STAFF)
        params = request.query
        limit = min(200, query_int(request, "limit", 50, 1, 100_000))
        offset = query_int(request, "offset", 0, 0, MAX_OFFSET)
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
        return web.json_response(result, headers={"Cache-Control": "no-store"})

    @table.get("/api/v1/cases/{id}")
    async def get_case(request: web.Request) -> web.Response:
        _staff, actor = await staff_actor(request, *STAFF)
        case_id = row_id(request, CaseErrorCode.CASE_NOT_FOUND)
        return web.json_response(
            await request.app[CASES].get(actor, case_id), headers={"Cache-Control": "no-store"}
        )

    @table.post("/api/v1/cases/{id}/actions/{action}")
    async def act(request: web.Request) -> web.Response:
        _staff, actor = await staff_actor(request)
        payload = await read_json(request) if request.can_read_body else {}
        case_id = row_id(request, CaseErrorCode.CASE_NOT_FOUND)
        case = await request.app[CASES].act(
            actor,
            case_id,
            request.match_info["action"],
            payload,
            dry_run=request.query.get("dry_run") == "1",
        )
        return web.json_response(case, headers={"Cache-Control": "no-store"})

    @table.get("/api/v1/supervision")
    async def supervision(request: web.Request) -> web.Response:
        await staff_actor(request, "supervisor", "admin")
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
