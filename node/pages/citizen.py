"""Citizen pages (no login): look a case up with its number and query code, follow it in plain
words, and rate it (好差评) once there is a result.

The query code is a password: it is only ever sent in a POST body (the form posts to
``POST /query``, which renders the result page on the server), never in a URL, so it does not
end up in access logs, browser history, bookmarks or a ``Referer``. The pages work without
JavaScript (old phones, 适老化), and the answer is sent ``Cache-Control: no-store``. Look-ups
share the public API's rate limiter buckets (per client and per case number), so the page
gives no way around the limit; a wrong code and an unknown number get the same answer.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import Row

from node.api.cases import combined_status
from node.api.citizen import find_case, lookup_allowed
from node.appkeys import CASES, CITIZEN_LIMITER, DATABASE
from node.cases import public
from node.cases.errors import CaseError
from node.cases.models import bundles, case_events, cases, ratings
from node.cases.personal import query_matches
from node.clock import today_in_china
from node.pages import videos
from node.pages.office import region_names
from node.pages.rendering import day, render, when

#: 好差评 levels as the citizen sees them (5 best).
LEVELS = (
    (5, "非常满意"),
    (4, "满意"),
    (3, "基本满意"),
    (2, "不满意"),
    (1, "非常不满意"),
)
LEVEL_LABELS = dict(LEVELS)
#: Rating channel of these pages: 2 = 移动端 (mobile).
CHANNEL_MOBILE = 2

NOT_FOUND = "未找到办件。请核对受理编号和查询码（见收件凭证）后重试。"
LIMITED = "查询过于频繁，请稍等一分钟后再试。"

#: What the applicant should know or do next, per status, in plain words.
NEXT_STEP = {
    "received": "您的申请已收到，正在进行形式审查。",
    "forwarded": "您的申请已转交办理地，等待办理地受理。",
    "accepted": "办理地已受理您的申请，正在审查办理。",
    "not_accepted": "办理地决定不予受理，理由见下方。如有疑问，可咨询收件窗口。",
    "supplement_pending": "需要您补正材料：请在期限内把下列材料交到收件窗口，办理时限暂停计算。",
    "inspection": "办理地将通过视频进行现场勘验，工作人员会提前与您联系。",
    "approved": "已办结，准予办理。结果将按您选择的方式送达。",
    "denied": "已办结，不予办理，理由见下方。",
    "dispatched": "办理结果已出件，请留意领取或签收。",
    "delivered": "办理结果已送达，本件办理完毕。",
    "withdrawn": "本件已撤回，不再办理。",
}
#: After these states the page asks for a rating (好差评) of the result.
RATE_DECIDE = {"approved", "denied", "dispatched", "delivered"}
RATE_ACCEPT = {"not_accepted"}
OPEN_STATES = {"received", "forwarded", "accepted", "inspection"}
DISPATCH_METHODS = {"mail": "邮寄送达", "window": "窗口领取"}


def inspection_step(words: dict[str, Any]) -> str:
    """The next step while the case is in ``inspection``: a 云见面 or a site inspection, still
    to come or over."""
    if words["over"]:
        return f"{words['name']}已结束，办理地正在审查办理，结果将另行告知。"
    if words["meeting"]:
        return "办理地将与您视频会面（云见面），工作人员会提前与您联系。"
    return NEXT_STEP["inspection"]


_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:[+-]\d{2}:\d{2}|Z)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def plain(text: str) -> str:
    """Dates and times in a timeline step as people write them (2026年12月1日 10:00)."""
    text = _MOMENT.sub(lambda m: when(m.group(0)), text)
    return _DATE.sub(lambda m: day(m.group(0)), text)


def _clean(value: Any, limit: int) -> str:
    return "".join(str(value or "").split())[:limit]


def _allowed(request: web.Request, case_no: str) -> bool:
    """The public API's buckets: per client, and per case and client."""
    return lookup_allowed(request.app[CITIZEN_LIMITER], request.remote, case_no)


async def _find(request: web.Request, case_no: str, code: str) -> Row[Any] | None:
    async with request.app[DATABASE].read() as conn:
        return await find_case(conn, request.app[CASES].sealer, case_no, code)


async def _find_bundle(request: web.Request, bundle_no: str, code: str) -> dict[str, Any] | None:
    """多地联办: the bundle's parts if ``bundle_no`` is a bundle number and the code is its
    query code (one code for every part)."""
    async with request.app[DATABASE].read() as conn:
        bundle = (
            await conn.execute(select(bundles).where(bundles.c.bundle_no == bundle_no))
        ).first()
        parts = []
        if bundle is not None:
            parts = list(
                (
                    await conn.execute(
                        select(cases)
                        .where(cases.c.bundle_id == bundle.id)
                        .order_by(cases.c.case_no)
                    )
                ).all()
            )
    first = parts[0] if parts else None
    sealer = request.app[CASES].sealer
    stored = first.query_hash if first is not None else None
    if not query_matches(sealer, first.case_no if first else bundle_no, code, stored):
        return None
    if bundle is None or first is None:
        return None
    names = region_names(request)
    shown = [
        {
            "case_no": part.case_no,
            "item_name": part.item_name,
            "region_name": names.get(part.handling_region, part.handling_region),
            "status": part.status,
            "promised_date": part.promised_date,
            "next_step": NEXT_STEP.get(part.status, ""),
        }
        for part in parts
    ]
    summary = combined_status([{"status": p["status"]} for p in shown])
    return {
        "bundle_no": bundle.bundle_no,
        "name": bundle.name,
        "members": shown,
        **summary,
    }


async def _view(request: web.Request, row_id: int) -> dict[str, Any]:
    async with request.app[DATABASE].read() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == row_id))).one()
        events = (
            await conn.execute(
                select(case_events)
                .where(case_events.c.case_id == row_id)
                .order_by(case_events.c.seq)
            )
        ).all()
        given = (
            await conn.execute(
                select(ratings.c.level, ratings.c.stage, ratings.c.comment, ratings.c.rated_at)
                .where(ratings.c.case_id == row_id)
                .order_by(ratings.c.rated_at)
            )
        ).all()
    today = today_in_china()
    view = public.timeline(row, list(events), today)
    for step in view["timeline"]:
        step["text"] = plain(step["text"])
    schedule = json.loads(row.details).get("inspection") or {}
    words = videos.words(schedule)
    evidence = schedule.get("evidence") or {}
    view["inspection"] = (
        {
            "scheduled_at": plain(str(schedule.get("scheduled_at") or "")),
            # Once it is over nobody is told to join it any more.
            "join_url": None if words["over"] else schedule.get("join_url"),
            "site_address": schedule.get("site_address"),
            "checklist": [c for c in schedule.get("checklist") or [] if isinstance(c, str)],
            "words": words,
            "over": words["over"],
            "completed_at": evidence.get("completed_at"),
        }
        if view["status"] == "inspection" and schedule
        else None
    )
    refusals = [json.loads(e.data) for e in events if e.action == "not_accept"]
    view["not_accepted_reason"] = refusals[-1].get("reason") if refusals else None
    deadline = view.get("deadline")
    view["overdue"] = bool(
        deadline and view["status"] in OPEN_STATES and today > date.fromisoformat(str(deadline))
    )
    for optional in ("supplement", "deferred", "pledged", "decision", "dispatch"):
        view.setdefault(optional, None)
    view["next_step"] = NEXT_STEP.get(view["status"], "")
    if view["status"] == "inspection":
        view["next_step"] = inspection_step(words)
        if words["over"]:
            view["status_label"] = f"{words['name']}已结束，审查中"
        elif words["meeting"]:
            view["status_label"] = "待云见面"
    if words["meeting"]:  # the timeline's words are the case domain's, for inspections
        for step in view["timeline"]:
            step["text"] = step["text"].replace("云端勘验", "云见面")
    view["mode"] = row.mode
    view["dispatch_label"] = DISPATCH_METHODS.get((view.get("dispatch") or {}).get("method"), "")
    application = json.loads(row.application)
    delivery = application.get("delivery") or {}
    view["delivery_label"] = DISPATCH_METHODS.get(delivery.get("method"), "")
    view["ratings"] = [
        {
            "level": r.level,
            "label": LEVEL_LABELS.get(r.level, str(r.level)),
            "stage": r.stage,
            "comment": r.comment,
            "rated_at": r.rated_at,
        }
        for r in given
    ]
    stage = None
    if view["status"] in RATE_DECIDE:
        stage = "decide"
    elif view["status"] in RATE_ACCEPT:
        stage = "accept"
    already = any(r["stage"] == stage for r in view["ratings"])
    view["rating_stage"] = stage if stage and not already else None
    return view


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _form(
    request: web.Request, *, case_no: str = "", error: str = "", status: int = 200
) -> web.Response:
    return _no_store(
        render(
            request,
            "citizen/query.html",
            status=status,
            case_no=case_no,
            error=error,
        )
    )


def _result(
    request: web.Request,
    view: dict[str, Any],
    code: str,
    *,
    thanks: bool = False,
    errors: dict[str, str] | None = None,
    given: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    return _no_store(
        render(
            request,
            "citizen/result.html",
            status=status,
            case=view,
            code=code,
            levels=LEVELS,
            thanks=thanks,
            errors=errors or {},
            given=given or {},
        )
    )


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/query")
    async def query_form(request: web.Request) -> web.Response:
        # ?case= comes from the QR code on the 收件凭证: the number only, never the code.
        return _form(request, case_no=_clean(request.query.get("case"), 40))

    @table.post("/query")
    async def query(request: web.Request) -> web.Response:
        form = await request.post()
        case_no = _clean(form.get("case_no"), 40)
        code = _clean(form.get("code"), 20)
        if not case_no or not code:
            return _form(request, case_no=case_no, error="请填写受理编号和查询码。", status=400)
        if not _allowed(request, case_no):
            return _form(request, case_no=case_no, error=LIMITED, status=429)
        row = await _find(request, case_no, code)
        if row is None:
            bundle = await _find_bundle(request, case_no, code)
            if bundle is not None:
                return _no_store(render(request, "citizen/bundle.html", bundle=bundle, code=code))
            return _form(request, case_no=case_no, error=NOT_FOUND, status=404)
        return _result(request, await _view(request, row.id), code)

    @table.post("/query/rating")
    async def rate(request: web.Request) -> web.Response:
        form = await request.post()
        case_no = _clean(form.get("case_no"), 40)
        code = _clean(form.get("code"), 20)
        if not case_no or not code:
            return _form(request, case_no=case_no, error="请填写受理编号和查询码。", status=400)
        if not _allowed(request, case_no):
            return _form(request, case_no=case_no, error=LIMITED, status=429)
        row = await _find(request, case_no, code)
        if row is None:
            return _form(request, case_no=case_no, error=NOT_FOUND, status=404)
        view = await _view(request, row.id)
        stage = view["rating_stage"]
        if stage is None:  # rated already, or nothing to rate yet: show the case as it is
            return _result(request, view, code)
        comment = str(form.get("comment", "")).strip()[:1000]
        given = {"level": str(form.get("level", "")), "comment": comment}
        errors: dict[str, str] = {}
        try:
            level = int(given["level"])
        except ValueError:
            level = 0
        if level not in LEVEL_LABELS:
            errors["level"] = "请选择一个评价等级。"
        elif level <= 2 and not comment:
            errors["comment"] = "请写下不满意的具体原因，便于整改。"
        if not errors:
            payload: dict[str, Any] = {
                "level": level,
                "stage": stage,
                "channel": CHANNEL_MOBILE,
            }
            if comment:
                payload["comment"] = comment
            try:
                await request.app[CASES].rate_as_citizen(row.id, payload)
            except CaseError as exc:
                for field in exc.fields:
                    errors[str(field.get("field", "level"))] = str(field.get("message", ""))
                if not errors:
                    errors["level"] = exc.message
        if errors:
            return _result(request, view, code, errors=errors, given=given, status=400)
        return _result(request, await _view(request, row.id), code, thanks=True)

    return table
