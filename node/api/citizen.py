"""The citizens' public API (no login): look a case up with its number and query code, rate
it, apply online (全程网办) and upload its files. Everything is rate-limited per client; a
look-up also per case *and* client, so that strangers hammering a case number cannot lock
its applicant out (docs/security.md)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import Row

from node.accounts.ratelimit import RateLimiter
from node.api.files import store_upload
from node.appkeys import CASES, CITIZEN_LIMITER, DATABASE
from node.cases import public, records
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.models import cases
from node.cases.personal import query_matches
from node.clock import today_in_china
from node.http_json import read_json
from node.identity.caller import api_identity
from node.storage.sealing import SealsValues

NOT_FOUND = "未找到案件，请核对受理编号和查询码"


def lookup_allowed(limiter: RateLimiter, client: str | None, case_no: str) -> bool:
    """One look-up costs a token of the client and one of the (case, client) pair."""
    return bool(limiter.hit(f"ip:{client}") and limiter.hit(f"case:{case_no}:{client}"))


def _limit(request: web.Request, what: str) -> None:
    if not request.app[CITIZEN_LIMITER].hit(f"{what}:{request.remote}"):
        raise CaseError(CaseErrorCode.RATE_LIMITED, "操作过于频繁，请稍后再试")


async def find_case(conn: Any, sealer: SealsValues, case_no: str, code: str) -> Row[Any] | None:
    """The case if number and query code match (constant time, the same work either way)."""
    row = (await conn.execute(select(cases).where(cases.c.case_no == case_no))).first()
    stored = row.query_hash if row is not None else None
    return row if query_matches(sealer, case_no, code, stored) else None


async def _citizen_case(request: web.Request, code: str) -> Row[Any]:
    case_no = request.match_info["case_no"]
    if not lookup_allowed(request.app[CITIZEN_LIMITER], request.remote, case_no):
        raise CaseError(CaseErrorCode.RATE_LIMITED, "查询过于频繁，请稍后再试")
    async with request.app[DATABASE].read() as conn:
        row = await find_case(conn, request.app[CASES].sealer, case_no, code)
    if row is None:
        raise CaseError(CaseErrorCode.CASE_NOT_FOUND, NOT_FOUND)
    return row


async def _timeline(request: web.Request, case_id: int) -> dict[str, Any]:
    async with request.app[DATABASE].read() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == case_id))).one()
        events = await records.events(conn, case_id)
    return public.timeline(row, events, today_in_china())


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()
    no_store = {"Cache-Control": "no-store"}

    @table.get("/api/v1/public/cases/{case_no}")
    async def citizen_case(request: web.Request) -> web.Response:
        row = await _citizen_case(request, request.query.get("code", ""))
        return web.json_response(await _timeline(request, row.id), headers=no_store)

    @table.post("/api/v1/public/applications")
    async def citizen_application(request: web.Request) -> web.Response:
        _limit(request, "apply")
        payload = await read_json(request)
        # Verified before anything is stored; a token that does not verify is refused.
        identity = await api_identity(request)
        result = await request.app[CASES].receive_online(payload, identity)
        return web.json_response(result, status=201, headers=no_store)

    @table.post("/api/v1/public/uploads")
    async def citizen_upload(request: web.Request) -> web.Response:
        _limit(request, "upload")
        service = request.app[CASES]
        stored = await store_upload(request, "citizen", now=service.clock())
        return web.json_response(stored, status=201)

    @table.post("/api/v1/public/cases/{case_no}/rating")
    async def citizen_rating(request: web.Request) -> web.Response:
        payload = await read_json(request)
        if not isinstance(payload, dict):
            raise CaseError(CaseErrorCode.INVALID_INPUT, "请求体应为 JSON 对象")
        row = await _citizen_case(request, str(payload.pop("code", "")))
        await request.app[CASES].rate_as_citizen(row.id, payload)
        return web.json_response(await _timeline(request, row.id), status=201, headers=no_store)

    return table
