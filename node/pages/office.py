"""办件箱 (the back office): the inbox of this region's cases and the case page.

Reads go through the same query and service functions as the JSON API; every change is a
form that posts to the JSON API (``static/app.js``), so the API's own checks and field errors
apply. The case page offers only the lifecycle actions the signed-in staff member may take on
the case now (``lifecycle.ACTIONS`` + state + side + role).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select

from node.accounts.service import list_users
from node.accounts.staff import ROLE_LABELS, Staff
from node.api.cases import combined_status
from node.appkeys import CASES, CONFIG, DATABASE, FEDERATION
from node.cases import queries, records
from node.cases.actions.identity_check import METHODS as IDENTITY_METHODS
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import ACTIONS, STATUS_LABELS, Mode, Side, Status, sides_of
from node.cases.models import bundles, cases
from node.clock import today_in_china
from node.http_json import path_int, query_int
from node.pages import videos
from node.pages.case_files import FILE_KINDS, stored_files
from node.pages.rendering import day, render_page, when
from node.pages.session import page_staff

#: Who may read the inbox and case pages.
READERS = ("approver", "inspector", "clerk", "supervisor", "admin")
PAGE_SIZE = 20
#: Highest page number of the inbox: far past any real inbox, far below any column's range.
MAX_PAGE = 100_000

SIDE_LABELS = {"handling": "办理（本地办理）", "receiving": "收件（本地收件）"}
APPLICANT_KINDS = {"person": "自然人", "org": "法人或其他组织"}
ID_TYPES = {
    "resident_id": "居民身份证",
    "unified_social_credit_code": "统一社会信用代码",
    "passport": "护照",
}
MATERIAL_STATUS = {"provided": "已提交", "deferred": "容缺", "pledged": "告知承诺"}
DELIVERY_METHODS = {"mail": "邮寄", "window": "窗口领取"}
OUTCOMES = {"approved": "准予", "denied": "不予"}
RATING_LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
RATING_STAGES = {"accept": "受理", "decide": "办结"}
PROGRESS_KINDS = {"pause": "暂停计时", "resume": "恢复计时", "extension": "延期"}
PROCEDURES = {
    "hearing": "听证",
    "testing": "检验检测",
    "expert_review": "专家评审",
    "other": "其他",
}
#: Timeline labels of events that are not actions of the table.
EVENT_LABELS = {
    **{name: a.label for name, a in ACTIONS.items()},
    "withdrawn": "已撤件",
    "partner_error": "对方节点退回消息",
}
#: The order the case page offers actions in (primary first).
ACTION_ORDER = (
    "verify_identity",
    "accept",
    "request_supplement",
    "schedule_inspection",
    "decide",
    "not_accept",
    "rectify",
    "progress",
    "confirm_withdrawal",
    "dispatch",
    "deliver",
    "rate",
    "withdraw",
    "supplement",
    "catch_up",
    "complete_inspection",
)


def region_names(request: web.Request) -> dict[str, str]:
    """Region code → name for this node and its partners."""
    config = request.app[CONFIG]
    names = {code: p.name for code, p in request.app[FEDERATION].trust.partners.items()}
    names[config.region] = config.name
    return names


def available_actions(
    case: dict[str, Any], staff: Staff, region: str, *, open_ratings: int
) -> list[str]:
    """The actions ``staff`` may take on ``case`` now, in the page's order."""
    sides = sides_of(Mode(case["mode"]), case["receiving_region"], case["handling_region"], region)
    state = Status(case["status"])
    allowed = []
    for name in ACTION_ORDER:
        action = ACTIONS.get(name)
        if action is None or action.side not in sides or staff.role not in action.roles:
            continue
        if action.sources and state not in action.sources:
            continue
        if name == "rectify" and not open_ratings:
            continue
        if name == "verify_identity" and case["application"].get("identity_verified") is not False:
            continue
        if name == "catch_up" and not any(not m["caught_up"] for m in case["deferred"]):
            continue
        if name in ("withdraw",) and case["details"].get("withdrawal", {}).get("requested"):
            continue
        allowed.append(name)
    return allowed


def event_text(
    event: dict[str, Any], names: dict[str, str], video: dict[str, Any] | None = None
) -> str:
    """One line for people about what an event did (no personal data beyond the case's)."""
    data = event.get("data") or {}
    action = event["action"]
    parts: list[str] = []
    if action == "submit" and data.get("materials") is not None:
        deferred = len(data.get("deferred") or [])
        pledged = len(data.get("pledged") or [])
        parts.append(f"材料 {int(data['materials']) - deferred - pledged} 份")
        if deferred:
            parts.append(f"容缺 {deferred} 项")
        if pledged:
            parts.append(f"告知承诺 {pledged} 项")
    elif action == "accept" and data.get("promised_date"):
        parts.append(f"承诺办结日期 {day(data['promised_date'])}")
        if data.get("provisional"):
            parts.append("（临时，待载入节假日数据后重算）")
    elif action == "request_supplement":
        if data.get("items") is not None:
            parts.append(f"一次性告知 {data['items']} 项")
        if data.get("deadline"):
            parts.append(f"补正期限 {day(data['deadline'])}")
    elif action == "supplement" and data.get("materials") is not None:
        parts.append(f"补正材料 {data['materials']} 份")
    elif action == "catch_up" and data.get("materials"):
        parts.append("补齐：" + "、".join(str(m) for m in data["materials"]))
    elif action == "schedule_inspection" and data.get("scheduled_at"):
        parts.append(f"{(video or {}).get('time', '勘验时间')} {when(data['scheduled_at'])}")
    elif action == "decide" and data.get("outcome"):
        parts.append(f"办理结果：{OUTCOMES.get(data['outcome'], data['outcome'])}")
    elif action in ("not_accept", "withdrawn", "withdraw") and data.get("reason"):
        parts.append(f"原因：{data['reason']}")
    elif action == "rate" and data.get("level"):
        parts.append(f"评价 {data['level']} 级（{RATING_LEVELS.get(data['level'], '')}）")
        if data.get("rectification_due"):
            parts.append(f"整改期限 {day(data['rectification_due'])}")
    elif action == "progress" and data.get("kind"):
        parts.append(f"{PROGRESS_KINDS.get(data['kind'], data['kind'])}：{data.get('reason', '')}")
    elif action == "dispatch" and data.get("method"):
        parts.append(DELIVERY_METHODS.get(data["method"], data["method"]))
        if data.get("tracking_no"):
            parts.append(f"{data.get('courier', '')} {data['tracking_no']}")
    elif action == "verify_identity" and data.get("method"):
        parts.append(IDENTITY_METHODS.get(data["method"], data["method"]))
        if data.get("note"):
            parts.append(str(data["note"]))
    elif action == "receive" and data.get("identity_verified") is False:
        parts.append("网上申请，申请人身份未经统一身份认证")
    elif action == "partner_error":
        parts.append(str(data.get("code", "")))
    envelope = data.get("envelope")
    if isinstance(envelope, dict) and envelope.get("to"):
        parts.append(f"已通知{names.get(envelope['to'], envelope['to'])}")
    return "；".join(p for p in parts if p)


def event_actor(event: dict[str, Any], names: dict[str, str]) -> str:
    actor = str(event.get("actor") or "")
    if actor.startswith("partner:"):
        region = actor.split(":", 1)[1]
        return f"{names.get(region, region)}（对方节点）"
    if actor == "citizen":
        return "申请人"
    if actor == "system":
        return "系统"
    return event.get("actor_name") or actor


async def _case_extras(request: web.Request, case: dict[str, Any]) -> dict[str, Any]:
    """What the case API does not carry: file types and the 多地联办 bundle; the ratings it
    carries, labelled."""
    today = today_in_china()
    files = await stored_files(request.app[DATABASE], case)
    async with request.app[DATABASE].read() as conn:
        bundle = None
        if case.get("bundle_id"):
            row = (
                await conn.execute(select(bundles).where(bundles.c.id == case["bundle_id"]))
            ).first()
            if row is not None:
                parts = [
                    records.summary(r, today)
                    for r in (
                        await conn.execute(
                            select(cases)
                            .where(cases.c.bundle_id == row.id)
                            .order_by(cases.c.case_no)
                        )
                    ).all()
                ]
                bundle = {
                    "bundle_no": row.bundle_no,
                    "name": row.name,
                    "cases": parts,
                    **combined_status(parts),
                }
    rating_list = [
        {
            **r,
            "level_label": RATING_LEVELS.get(r["level"], ""),
            "stage": RATING_STAGES.get(r["stage"], r["stage"]),
        }
        for r in case.get("ratings", [])
    ]
    return {"files": files, "ratings": rating_list, "bundle": bundle}


def _inbox_filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    status = [s for s in q.getall("status", []) if s in {str(x) for x in Status}]
    time_status = q.get("time_status") if q.get("time_status") in TIME_FILTERS else ""
    side = q.get("side") if q.get("side") in SIDE_LABELS else ""
    page = query_int(request, "page", 1, 1, MAX_PAGE)
    return {
        "status": status,
        "time_status": time_status,
        "partner": (q.get("partner") or "").strip()[:6],
        "side": side,
        "q": (q.get("q") or "").strip()[:60],
        "page": page,
    }


TIME_FILTERS = {"overdue": "超期", "warning": "预警", "normal": "正常"}
#: Ready-made filters above the inbox (label, query string).
QUICK_FILTERS = (
    ("全部办件", ""),
    ("待受理", "status=forwarded&status=received"),
    ("办理中", "status=accepted&status=supplement_pending&status=inspection"),
    ("超期", "time_status=overdue"),
    ("预警", "time_status=warning"),
    ("待出件", "status=approved&status=denied"),
)


def _query_string(filters: dict[str, Any], **override: Any) -> str:
    merged = {**filters, **override}
    pairs: list[tuple[str, str]] = []
    for key in ("status", "time_status", "partner", "side", "q", "page"):
        value = merged.get(key)
        if key == "page" and value == 1:
            continue
        if isinstance(value, list):
            pairs += [(key, v) for v in value]
        elif value:
            pairs.append((key, str(value)))
    return urlencode(pairs)


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/office")
    async def inbox(request: web.Request) -> web.Response:
        staff = await page_staff(request, *READERS)
        filters = _inbox_filters(request)
        today = today_in_china()
        async with request.app[DATABASE].read() as conn:
            result = await queries.inbox(
                conn,
                today=today,
                status=filters["status"] or None,
                time_status=filters["time_status"] or None,
                q=filters["q"] or None,
                partner=filters["partner"] or None,
                side=filters["side"] or None,
                region=staff.region,
                limit=PAGE_SIZE + 1,
                offset=(filters["page"] - 1) * PAGE_SIZE,
            )
        found = result["cases"]
        names = region_names(request)
        config = request.app[CONFIG]
        return await render_page(
            request,
            "office/inbox.html",
            cases=found[:PAGE_SIZE],
            has_next=len(found) > PAGE_SIZE,
            filters=filters,
            names=names,
            partners=sorted((r, n) for r, n in names.items() if r != config.region),
            status_labels={str(k): v for k, v in STATUS_LABELS.items()},
            time_filters=TIME_FILTERS,
            side_labels=SIDE_LABELS,
            qs=lambda **kw: _query_string(filters, **kw),
            filtered=any(filters[k] for k in ("status", "time_status", "partner", "side", "q")),
            quick=QUICK_FILTERS,
            current_query=_query_string(filters, page=1),
            today=today.isoformat(),
        )

    @table.get("/office/cases/{id}")
    async def case_page(request: web.Request) -> web.Response:
        staff = await page_staff(request, *READERS)
        case_id = path_int(request)
        try:
            if case_id is None:
                raise CaseError(CaseErrorCode.CASE_NOT_FOUND, "办件不存在")
            case = await request.app[CASES].get(staff, case_id)
        except CaseError:
            return await render_page(
                request, "not_found.html", status=404, message="办件不存在或已被删除。"
            )
        extras = await _case_extras(request, case)
        item = await request.app[CASES].items(case["item_code"])
        form_labels = {f.name: f.label for f in getattr(item, "form_fields", ())}
        config = request.app[CONFIG]
        names = region_names(request)
        open_ratings = [r for r in extras["ratings"] if r["open"]]
        actions = available_actions(case, staff, config.region, open_ratings=len(open_ratings))
        sides = sides_of(
            Mode(case["mode"]), case["receiving_region"], case["handling_region"], config.region
        )
        materials = [
            {
                **m,
                "name": m.get("name") or m.get("code"),
                "status_label": MATERIAL_STATUS.get(m.get("status", ""), m.get("status", "")),
            }
            for m in case["application"].get("materials", [])
        ]
        event_labels = videos.action_words(EVENT_LABELS, case["details"].get("inspection"))
        video = videos.words(case["details"].get("inspection"))
        events = [
            {
                **e,
                "label": event_labels.get(e["action"], e["action"]),
                "text": event_text(e, names, video),
                "who": event_actor(e, names),
            }
            for e in reversed(case["events"])
        ]
        details = case["details"]
        inspection = details.get("inspection") or None
        console_url = invitation_url = None
        if inspection and inspection.get("session_id"):
            if Side.HANDLING in sides:
                console_url = f"/inspection/{inspection['session_id']}/console"
            invitation_url = f"/inspection/v1/cases/{case['id']}/invitation"
        inspectors: list[tuple[str, str]] = []
        if "schedule_inspection" in actions:
            # Who may join the video inspection: the region's active inspectors and approvers.
            inspectors = [
                (u.username, f"{u.display_name}（{ROLE_LABELS.get(u.role, u.role)}）")
                for u in await list_users(request.app[DATABASE])
                if u.active and u.role in ("inspector", "approver")
            ]
        return await render_page(
            request,
            "office/case.html",
            case=case,
            file_kinds=FILE_KINDS,
            inspectors=inspectors,
            materials=materials,
            files=extras["files"],
            ratings=extras["ratings"],
            open_ratings=open_ratings,
            bundle=extras["bundle"],
            bundle_info=case["application"].get("bundle"),
            events=events,
            actions=actions,
            action_labels=videos.action_words(
                {n: ACTIONS[n].label for n in ACTIONS}, case["details"].get("inspection")
            ),
            status_words=videos.status_words(case["details"].get("inspection")),
            identity_methods=IDENTITY_METHODS,
            names=names,
            our_side=(
                "办理地" if Side.HANDLING in sides else "收件地" if Side.RECEIVING in sides else ""
            ),
            phone=case["applicant"]["phone"] or "",
            applicant_kinds=APPLICANT_KINDS,
            id_types=ID_TYPES,
            delivery_methods=DELIVERY_METHODS,
            outcomes=OUTCOMES,
            procedures=PROCEDURES,
            progress_kinds=PROGRESS_KINDS,
            rating_levels=RATING_LEVELS,
            supplement=details.get("supplement"),
            decision=details.get("decision"),
            dispatch=details.get("dispatch"),
            delivery=details.get("delivery"),
            withdrawal=details.get("withdrawal"),
            errors=details.get("errors") or [],
            inspection=inspection,
            console_url=console_url,
            video=videos.words(inspection),
            form_labels=form_labels,
            evidence_kinds=videos.evidence_kinds(inspection),
            invitation_url=invitation_url,
            today=today_in_china().isoformat(),
        )

    return table
