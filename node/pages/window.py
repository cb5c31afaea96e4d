"""The window pages (收件, role ``clerk``): choose an item, tell the applicant everything at once
(一次告知), take the application with its scans, print the 收件凭证, and follow this window's
cases (relay 补正 notices, 容缺 catch-up, hand over results, withdrawal requests).

Every change goes through the JSON API from the page (static/app.js, static/window.js); these
handlers only read and render.

The query code (查询码) exists in plain text only in the answer that creates a case; the node
keeps its hash. The page that took the application posts it straight to
``POST /window/receipt/{id}`` (or ``/window/bundles/{id}/receipt``), which checks it against the
stored hash and prints it on the 收件凭证, uncached; it is never stored or logged. Opened later
(``GET``), the receipt shows everything but the code. The QR code carries the case number only
(``{node url}/query?case=...``): the citizen types the printed code, so a code never travels in
a URL, a history entry or an access log.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from aiohttp import web
from sqlalchemy import select

from node.accounts import sessions
from node.accounts.staff import Staff
from node.appkeys import CASES, CITIZEN_LIMITER, CONFIG, DATABASE, FEDERATION
from node.cases import records
from node.cases.errors import CaseError
from node.cases.lifecycle import ACTIONS, CLOSED, OPEN, Status
from node.cases.models import bundles, cases
from node.cases.personal import query_matches
from node.cases.validation import ID_TYPES
from node.catalog.items import get_item, partner_fetched_at
from node.catalog.labels import DELIVERY_LABELS, FORM_LABELS, MODE_LABELS, RESULT_LABELS
from node.catalog.search import PAGE_SIZE, Entry, SearchError, SearchQuery, search, summary_fields
from node.clock import today_in_china
from node.http_json import path_int
from node.pages import session, videos
from node.pages.case_files import FILE_KINDS, stored_files
from node.pages.paging import Paged, nav
from node.pages.qr import qr_svg
from node.pages.rendering import day, render_page
from node.videocalls.service import call_uploads
from protocol.catalog import MODES, Item
from protocol.regions import PROVINCES

#: Roles that may open the window pages (an admin looks; only a clerk may submit).
VIEWERS = ("clerk", "admin")
#: The chooser's search parameters (node/catalog/search.py SearchQuery.parse).
CHOOSER_PARAMS = ("q", "mode", "province", "region", "page")
#: The bundle page's search: the chooser's without the mode (joint items only).
BUNDLE_PARAMS = ("q", "province", "region", "page")
#: Items in one 多地联办 application at most.
MAX_BUNDLE_PARTS = 10
RECENT = 50

MATERIAL_STATUS_LABELS = {"provided": "已提供", "deferred": "容缺", "pledged": "告知承诺"}
TYPE_NAMES = {"application/pdf": "PDF", "image/jpeg": "JPG", "image/png": "PNG"}
#: Event names for people (the lifecycle's actions and the service's own events).
ACTION_LABELS: dict[str, str] = {
    **{name: action.label for name, action in ACTIONS.items()},
    "receive": "收件",
    "withdrawn": "已撤件",
    "partner_error": "对方节点拒收消息",
}
#: 好差评 levels, best first.
RATING_LEVELS = [
    (5, "非常满意"),
    (4, "满意"),
    (3, "基本满意"),
    (2, "不满意"),
    (1, "非常不满意"),
]
#: Channel of a rating taken at the window: the hall's tablet (评价器), docs/messages.md.
WINDOW_RATING_CHANNEL = 4
AFTER_DECISION = {Status.APPROVED, Status.DENIED, Status.DISPATCHED, Status.DELIVERED}
#: What the window does next, by status (for the clerk).
NEXT_STEPS: dict[str, str] = {
    "received": "已接件，等待转交办理地",
    "forwarded": "等待办理地受理",
    "accepted": "办理地审批中",
    "supplement_pending": "转告申请人补正通知，收取补正材料后提交",
    "inspection": "办理地云端勘验中",
    "approved": "已准予：办结结果待出件（窗口领取或邮寄）",
    "denied": "不予办理：将决定书交付申请人（出件）",
    "dispatched": "结果已出件：申请人领取或签收后登记送达",
    "delivered": "已送达，可请申请人评价",
    "not_accepted": "不予受理：告知申请人理由",
    "withdrawn": "已撤件",
}


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/window")
    async def chooser(request: web.Request) -> web.Response:
        """Choose an item: one page of the catalogue index (node/catalog/search.py), ours and
        every partner's current items, ranked; a plain GET form, no script needed."""
        staff = await session.page_staff(request, *VIEWERS)
        db = request.app[DATABASE]
        params = {k: request.query.get(k, "") for k in CHOOSER_PARAMS}
        problem = ""
        try:
            query = SearchQuery.parse(params)
        except SearchError as exc:
            problem = exc.message
            query = SearchQuery()
        found = await search(db, query, page_size=PAGE_SIZE)
        fetched = await partner_fetched_at(db, {e.handling_region for e in found.entries})
        paged = Paged(found.entries, found.page, found.pages, found.total, PAGE_SIZE)
        shown = {k: v for k, v in params.items() if v and k != "page" and not problem}
        response = await render_page(
            request,
            "window/chooser.html",
            q=query.text,
            region=query.region,
            province=query.province,
            mode=query.mode,
            provinces=sorted(PROVINCES.items()),
            modes=[(m, MODE_LABELS[m]) for m in MODES],
            problem=problem,
            groups=_groups(request, found.entries, fetched),
            paged=paged,
            pager_links=nav(shown, "page", paged),
            capped=found.capped,
            filtered=bool(shown),
            joint_count=(await search(db, SearchQuery(mode="joint"), page_size=1)).total,
            can_submit=staff.role == "clerk",
        )
        if problem:
            response.set_status(400)
        return response

    @table.get("/window/items/{code}")
    async def item_page(request: web.Request) -> web.Response:
        staff = await session.page_staff(request, *VIEWERS)
        item = await get_item(request.app[DATABASE], request.match_info["code"])
        if item is None or item.retired:
            raise web.HTTPNotFound()
        mode = _window_mode(request, item)
        return await render_page(
            request,
            "window/item.html",
            item=item,
            view=_item_view(request, item),
            mode=mode,
            estimate=await _estimate(request, item),
            id_types=ID_TYPES,
            can_submit=staff.role == "clerk",
            # 视频收件: the snapshots of the clerk's own video call, attached as uploads.
            call_files=await call_uploads(
                request.app[DATABASE], request.query.get("call", "")[:36], staff.username
            ),
        )

    @table.get("/window/bundle")
    async def bundle_page(request: web.Request) -> web.Response:
        """多地联办: choose one joint item per handling region (at least two). The candidates are
        a page of the catalogue index (searched like the chooser, joint items only); the items
        chosen so far travel along as ``items`` and are read one by one, never the whole
        catalogue. With ``go`` and a valid choice, one form for all of them."""
        staff = await session.page_staff(request, *VIEWERS)
        db = request.app[DATABASE]
        params = {k: request.query.get(k, "") for k in BUNDLE_PARAMS}
        problem = ""
        try:
            query = SearchQuery.parse(params)
        except SearchError as exc:
            problem = exc.message
            query = SearchQuery()
        chosen_codes = list(dict.fromkeys(c for c in request.query.getall("items", []) if c))
        query = replace(query, mode="joint", exclude=tuple(chosen_codes[:MAX_BUNDLE_PARTS]))
        chosen = await _joint_items(request, chosen_codes[:MAX_BUNDLE_PARTS])
        if request.query.get("go") and not problem:
            if len(chosen_codes) > MAX_BUNDLE_PARTS:
                problem = f"一件联办最多包含 {MAX_BUNDLE_PARTS} 个事项"
            elif len(chosen) < 2:
                problem = "请至少选择 2 个可多地联办的事项"
            elif len({i.handling_region for i in chosen}) < len(chosen):
                problem = "同一办理地的事项请合并为一件，每个办理地只选一个事项"
        ready = bool(request.query.get("go")) and not problem
        found = await search(db, query, page_size=PAGE_SIZE)
        paged = Paged(found.entries, found.page, found.pages, found.total, PAGE_SIZE)
        kept = [(k, v) for k, v in params.items() if v and k != "page" and not problem]
        response = await render_page(
            request,
            "window/bundle.html",
            q=query.text,
            region=query.region,
            province=query.province,
            provinces=sorted(PROVINCES.items()),
            chosen=[_item_summary(request, i) for i in chosen],
            candidates=[_entry_summary(request, e) for e in found.entries],
            paged=paged,
            pager_links=nav([("items", c) for c in chosen_codes] + kept, "page", paged),
            capped=found.capped,
            parts=[_item_view(request, i) | {"item": i} for i in chosen] if ready else [],
            problem=problem,
            id_types=ID_TYPES,
            can_submit=staff.role == "clerk",
        )
        if problem and not request.query.get("go"):
            response.set_status(400)
        return response

    @table.get("/window/receipt/{id}")
    async def receipt(request: web.Request) -> web.Response:
        staff = await session.page_staff(request, *VIEWERS)
        return await _receipt(request, staff, code=None)

    @table.post("/window/receipt/{id}")
    async def receipt_once(request: web.Request) -> web.Response:
        staff = await session.page_staff(request, *VIEWERS)
        code = await _posted_code(request)
        return await _receipt(request, staff, code=code)

    @table.get("/window/bundles/{id}/receipt")
    async def bundle_receipt(request: web.Request) -> web.Response:
        await session.page_staff(request, *VIEWERS)
        return await _bundle_receipt(request, code=None)

    @table.post("/window/bundles/{id}/receipt")
    async def bundle_receipt_once(request: web.Request) -> web.Response:
        await session.page_staff(request, *VIEWERS)
        code = await _posted_code(request)
        return await _bundle_receipt(request, code=code)

    @table.get("/window/cases")
    async def case_list(request: web.Request) -> web.Response:
        await session.page_staff(request, *VIEWERS)
        region = request.app[CONFIG].region
        wanted = request.query.get("status", "")
        today = today_in_china()
        query = select(cases).where(cases.c.receiving_region == region)
        if wanted == "todo":
            query = query.where(
                cases.c.status.in_(["supplement_pending", "approved", "denied", "dispatched"])
                | cases.c.deferred_until.is_not(None)
            )
        elif wanted in {s.value for s in Status}:
            query = query.where(cases.c.status == wanted)
        else:
            wanted = ""
        async with request.app[DATABASE].read() as conn:
            rows = (
                await conn.execute(query.order_by(cases.c.received_at.desc()).limit(RECENT))
            ).all()
        found = [records.summary(r, today) | {"next_step": _next_step(r)} for r in rows]
        return await render_page(
            request,
            "window/cases.html",
            cases=found,
            wanted=wanted,
            statuses=[(s.value, s) for s in Status],
        )

    @table.get("/window/cases/{id}")
    async def case_page(request: web.Request) -> web.Response:
        staff = await session.page_staff(request, *VIEWERS)
        case = await _own_case(request, staff)
        status = Status(case["status"])
        details = case["details"]
        withdrawal = details.get("withdrawal", {})
        outstanding = [m for m in case["deferred"] if not m["caught_up"]]
        item = await get_item(request.app[DATABASE], case["item_code"])
        can_submit = staff.role == "clerk"
        return await render_page(
            request,
            "window/case.html",
            case=case,
            item=item,
            region_names={
                r: _region_name(request, r)
                for r in (case["receiving_region"], case["handling_region"])
            },
            next_step=_status_step(case["status"], details),
            inspection=details.get("inspection") or None,
            video=videos.words(details.get("inspection")),
            evidence_kinds=videos.evidence_kinds(details.get("inspection")),
            files=await stored_files(request.app[DATABASE], case),
            file_kinds=FILE_KINDS,
            console_url=None,
            invitation_url=_invitation_url(case),
            supplement=details.get("supplement") or {},
            decision=details.get("decision") or {},
            dispatch=details.get("dispatch") or {},
            delivery_done=details.get("delivery") or {},
            withdrawal=withdrawal,
            outstanding=outstanding,
            can_supplement=can_submit and status is Status.SUPPLEMENT_PENDING,
            can_catch_up=can_submit and bool(outstanding) and status not in CLOSED,
            can_dispatch=can_submit
            and status in (Status.APPROVED, Status.DENIED)
            and not (status is Status.APPROVED and outstanding),
            can_deliver=can_submit and status is Status.DISPATCHED,
            can_withdraw=can_submit and status in OPEN and not withdrawal.get("requested"),
            can_rate=can_submit and status in ACTIONS["rate"].sources,
            rate_stage="decide" if status in AFTER_DECISION else "accept",
            rating_levels=RATING_LEVELS,
            rating_channel=WINDOW_RATING_CHANNEL,
            application_delivery=case["application"].get("delivery") or {},
            material_labels=MATERIAL_STATUS_LABELS,
            action_labels=videos.action_words(ACTION_LABELS, details.get("inspection")),
            status_words=videos.status_words(details.get("inspection")),
        )

    return table


# -- helpers ------------------------------------------------------------------------------


def _region_name(request: web.Request, region: str) -> str:
    fed = request.app[FEDERATION]
    if region == fed.identity.region:
        return fed.identity.name
    partner = fed.trust.partner(region)
    return partner.name if partner is not None else region


def _groups(
    request: web.Request, entries: list[Entry], fetched: dict[str, float | None]
) -> list[dict[str, Any]]:
    """The page's results in rank order, consecutive items of one region in one group."""
    own_region = request.app[CONFIG].region
    groups: list[dict[str, Any]] = []
    for entry in entries:
        if not groups or groups[-1]["region"] != entry.handling_region:
            groups.append(
                {
                    "id": f"region-{entry.handling_region}-{len(groups)}",
                    "region": entry.handling_region,
                    "name": _region_name(request, entry.handling_region),
                    "own": entry.handling_region == own_region,
                    "fetched_at": fetched.get(entry.handling_region),
                    "items": [],
                }
            )
        groups[-1]["items"].append(_entry_summary(request, entry))
    return groups


def _entry_summary(request: web.Request, entry: Entry) -> dict[str, Any]:
    """What the chooser shows of an index entry (as :func:`_item_summary` of an item)."""
    facts = entry.summary
    own = entry.handling_region == request.app[CONFIG].region
    modes = entry.modes
    wanted = "online" if own else "proxy"
    return summary_fields(entry, _region_name(request, entry.handling_region)) | {
        "modes": [MODE_LABELS[m] for m in modes if m in MODE_LABELS],
        "joint": "joint" in modes,
        "window_mode": wanted if wanted in modes else None,
        "materials": facts.get("materials", 0),
        "required": facts.get("required", 0),
        "deferrable": facts.get("deferrable", 0),
        "pledgeable": facts.get("pledgeable", 0),
    }


async def _joint_items(request: web.Request, codes: list[str]) -> list[Item]:
    """The current items of ``codes`` that can be handled jointly, in the order given (others
    are dropped: a retired item, a code no catalogue lists, an item without 多地联办)."""
    db = request.app[DATABASE]
    found = [await get_item(db, code) for code in codes]
    return [i for i in found if i is not None and not i.retired and "joint" in i.modes]


def _window_mode(request: web.Request, item: Item) -> str | None:
    """How this window applies for ``item``: a partner's item by 异地代收代办, our own by
    全程网办 taken at the window; None when only 多地联办 (or nothing) fits."""
    own = item.handling_region == request.app[CONFIG].region
    if own:
        return "online" if "online" in item.modes else None
    return "proxy" if "proxy" in item.modes else None


def _item_summary(request: web.Request, item: Item) -> dict[str, Any]:
    return {
        "code": item.code,
        "name": item.name,
        "department": item.department,
        "handling_region": item.handling_region,
        "handling_region_name": _region_name(request, item.handling_region),
        "modes": [MODE_LABELS[m] for m in item.modes],
        "joint": "joint" in item.modes,
        "window_mode": _window_mode(request, item),
        "promised_limit_days": item.promised_limit_days,
        "legal_limit_days": item.legal_limit_days,
        "inspection_required": item.inspection.required,
        "materials": len(item.materials),
        "required": sum(1 for m in item.materials if m.required),
        "deferrable": sum(1 for m in item.materials if m.deferrable),
        "pledgeable": sum(1 for m in item.materials if m.pledgeable),
    }


def _item_view(request: web.Request, item: Item) -> dict[str, Any]:
    """Labels for the 一次告知 sheet."""
    return {
        "region_name": _region_name(request, item.handling_region),
        "own": item.handling_region == request.app[CONFIG].region,
        "modes": [MODE_LABELS[m] for m in item.modes],
        "result": RESULT_LABELS.get(item.result_type, item.result_type),
        "delivery": [(d, DELIVERY_LABELS.get(d, d)) for d in item.delivery],
        "materials": [
            {
                "m": m,
                "form_label": FORM_LABELS.get(m.form, m.form),
                "types": "、".join(TYPE_NAMES.get(t, t) for t in m.media_types),
                "accept": ",".join(m.media_types),
                "max_mb": max(1, m.max_bytes // (1024 * 1024)),
            }
            for m in item.materials
        ],
        "fee": (
            f"{item.fee.description}（{item.fee.amount_fen / 100:.2f} 元）"
            if item.fee.amount_fen
            else item.fee.description
        ),
    }


async def _estimate(request: web.Request, item: Item) -> dict[str, Any]:
    """The promised date if the handling region accepted today (fixed only at 受理)."""
    calendar = await request.app[CASES].calendar()
    deadline = calendar.add_working_days(today_in_china(), item.promised_limit_days)
    return {"date": deadline.date, "provisional": deadline.provisional}


async def _posted_code(request: web.Request) -> str:
    form = await request.post()
    token = sessions.cookie_token(request)
    if not token or not await sessions.csrf_ok(request, token, str(form.get(sessions.CSRF_FIELD))):
        raise web.HTTPForbidden(text="页面已过期，请刷新后重试")
    code = str(form.get("code", "")).strip()
    if not code.isdigit() or len(code) > 12:
        return ""
    # Printing a receipt is rare; trying codes one after another is not (the citizen's key).
    staff = await sessions.cookie_staff(request)
    who = staff.username if staff is not None else str(request.remote)
    if not request.app[CITIZEN_LIMITER].hit(f"window-receipt:{who}"):
        return ""
    return code


def _code_matches(request: web.Request, case_no: str, code: str, stored: str | None) -> bool:
    return bool(code) and query_matches(request.app[CASES].sealer, case_no, code, stored)


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _case_id(request: web.Request) -> int:
    case_id = path_int(request)
    if case_id is None:
        raise web.HTTPNotFound()
    return case_id


async def _own_case(request: web.Request, staff: Staff) -> dict[str, Any]:
    """A case this window received (the receiving side), in full."""
    try:
        case = await request.app[CASES].get(staff, _case_id(request))
    except CaseError as exc:
        raise web.HTTPNotFound() from exc
    if case["receiving_region"] != request.app[CONFIG].region:
        raise web.HTTPNotFound()
    return case


def _status_step(status: str, details: dict[str, Any]) -> str:
    """The next step by status; in ``inspection``, whether the 云端勘验 or 云见面 is over."""
    if status != "inspection":
        return NEXT_STEPS.get(status, "")
    words = videos.words(details.get("inspection"))
    if words["over"]:
        return f"办理地{words['name']}已结束，等待办结决定"
    return f"办理地{words['name']}中：请把邀请二维码交给申请人"


def _invitation_url(case: dict[str, Any]) -> str | None:
    """The printable invitation while the case's video session is still to come."""
    schedule = case["details"].get("inspection") or {}
    if case["status"] != "inspection" or not schedule.get("join_url") or videos.is_over(schedule):
        return None
    return f"/inspection/v1/cases/{case['id']}/invitation"


def _next_step(row: Any) -> str:
    step = _status_step(row.status, json.loads(row.details or "{}"))
    if row.deferred_until and row.status not in {s.value for s in CLOSED}:
        step += f"；容缺材料须于 {day(row.deferred_until)} 前补齐"
    return step


def _part_view(request: web.Request, case: dict[str, Any], item: Item | None) -> dict[str, Any]:
    base = request.app[CONFIG].url.rstrip("/")
    url = f"{base}/query?case={case['case_no']}"
    materials = case["application"].get("materials", [])
    return {
        "case": case,
        "item": item,
        "region_name": _region_name(request, case["handling_region"]),
        "qr": qr_svg(url, label="办件查询二维码：扫码打开办件查询页面", border=2),
        "query_url": url,
        "materials": materials,
        "deferred": [m for m in materials if m.get("status") == "deferred"],
        "pledged": [m for m in materials if m.get("status") == "pledged"],
    }


async def _receipt(request: web.Request, staff: Staff, *, code: str | None) -> web.Response:
    case = await _own_case(request, staff)
    async with request.app[DATABASE].read() as conn:
        stored = (
            await conn.execute(select(cases.c.query_hash).where(cases.c.id == case["id"]))
        ).scalar()
    shown = (
        code if code is not None and _code_matches(request, case["case_no"], code, stored) else None
    )
    item = await get_item(request.app[DATABASE], case["item_code"])
    estimate = await _estimate(request, item) if item is not None else None
    response = await render_page(
        request,
        "window/receipt.html",
        parts=[_part_view(request, case, item)],
        case=case,
        bundle=None,
        code=shown,
        code_refused=code is not None and shown is None,
        estimate=estimate,
        applicant=case["applicant"],
        delivery=case["application"].get("delivery") or {},
        received_at=case["received_at"],
        material_labels=MATERIAL_STATUS_LABELS,
    )
    return _no_store(response)


async def _bundle_receipt(request: web.Request, *, code: str | None) -> web.Response:
    bundle_id = _case_id(request)
    region = request.app[CONFIG].region
    async with request.app[DATABASE].read() as conn:
        bundle = (await conn.execute(select(bundles).where(bundles.c.id == bundle_id))).first()
        rows = (
            await conn.execute(
                select(cases.c.id, cases.c.case_no, cases.c.query_hash, cases.c.receiving_region)
                .where(cases.c.bundle_id == bundle_id)
                .order_by(cases.c.case_no)
            )
        ).all()
    if bundle is None or not rows or any(r.receiving_region != region for r in rows):
        raise web.HTTPNotFound()
    staff = await sessions.cookie_staff(request)
    assert staff is not None
    parts = []
    for row in rows:
        case = await request.app[CASES].get(staff, row.id)
        item = await get_item(request.app[DATABASE], case["item_code"])
        parts.append(_part_view(request, case, item) | {"hash": row.query_hash})
    shown = (
        code
        if code is not None
        and all(_code_matches(request, p["case"]["case_no"], code, p["hash"]) for p in parts)
        else None
    )
    first = parts[0]["case"]
    response = await render_page(
        request,
        "window/receipt.html",
        parts=parts,
        case=first,
        bundle={"id": bundle.id, "bundle_no": bundle.bundle_no, "name": bundle.name},
        code=shown,
        code_refused=code is not None and shown is None,
        estimate=None,
        applicant=first["applicant"],
        delivery=first["application"].get("delivery") or {},
        received_at=first["received_at"],
        material_labels=MATERIAL_STATUS_LABELS,
    )
    return _no_store(response)
