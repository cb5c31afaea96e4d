"""What a citizen sees of a case: a timeline in plain words, no internal detail."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Row

from node.cases import records
from node.cases.lifecycle import STATUS_LABELS, Status
from node.clock import CHINA

_PLAIN = {
    "submit": "窗口已收件，材料已转交办理地",
    "receive": "已收到您的申请",
    "accept": "办理地已受理，承诺办结日期 {promised_date}",
    "not_accept": "办理地决定不予受理",
    "request_supplement": "需要补正材料，请在 {deadline} 前到收件窗口补交",
    "supplement": "补正材料已提交",
    "catch_up": "容缺材料已补交",
    "schedule_inspection": "已安排云端勘验，时间 {scheduled_at}",
    "complete_inspection": "云端勘验已完成",
    "decide": "已办结",
    "dispatch": "结果已出件",
    "deliver": "结果已送达",
    "withdraw": "已申请撤件",
    "withdrawn": "案件已撤回",  # and why, below
    "rate": "感谢您的评价",
    "rectify": "您的意见已整改并回访",
    "progress": "办理进度更新：{reason}",
}


def timeline(row: Row[Any], events: list[Row[Any]], today: date) -> dict[str, Any]:
    details = json.loads(row.details)
    application = json.loads(row.application)
    steps = []
    seen_submit = False
    # Every 补正 notice, oldest first: the deadline of a request_supplement event recorded
    # without one (the receiving node's, before it kept it) is its notice's.
    notices = [*reversed(details.get("supplement_history", [])), details.get("supplement") or {}]
    requests = 0
    for event in events:
        data = json.loads(event.data)
        if event.action == "request_supplement":
            if "deadline" not in data and requests < len(notices):
                data["deadline"] = notices[requests].get("deadline")
            requests += 1
        if event.action == "submit":
            if seen_submit:  # the handling node's copy of the same step
                continue
            seen_submit = True
        if event.action in ("partner_error", "reveal"):
            continue
        text = _PLAIN.get(event.action, "办理进度更新")
        try:
            text = text.format(**{k: v for k, v in data.items() if isinstance(v, str | int)})
        except (KeyError, IndexError):
            text = text.split("，")[0]
        if event.action == "withdrawn":
            reason = data.get("reason")
            text = f"案件已撤回：{reason}" if isinstance(reason, str) and reason else "案件已撤回"
        if event.action == "decide":
            # Not every item is a licence (许可): 办理 fits them all.
            text = "已办结：" + ("准予办理" if data.get("outcome") == "approved" else "不予办理")
        steps.append(
            {
                "at": datetime.fromtimestamp(event.at, CHINA).isoformat(timespec="minutes"),
                "text": text,
            }
        )
    status = Status(row.status)
    result: dict[str, Any] = {
        "case_no": row.case_no,
        "item_name": row.item_name,
        "status": row.status,
        "status_label": STATUS_LABELS[status],
        "promised_date": row.promised_date,
        "deadline": row.deadline,
        "deadline_provisional": bool(row.deadline_provisional),
        "timeline": steps,
        "can_rate": status
        in {
            Status.APPROVED,
            Status.DENIED,
            Status.DISPATCHED,
            Status.DELIVERED,
            Status.ACCEPTED,
            Status.NOT_ACCEPTED,
        },
    }
    if status is Status.SUPPLEMENT_PENDING and "supplement" in details:
        notice = details["supplement"]
        result["supplement"] = {
            "deadline": notice.get("deadline"),
            "items": [
                {"name": i.get("name"), "requirement": i.get("requirement")}
                for i in notice.get("items", [])
            ],
        }
    deferred = records.deferred_detail(application, details)
    if deferred:
        # 容缺: what the applicant promised to hand in, by when, and whether it is late.
        result["deferred"] = {
            "materials": [
                {
                    "name": m["name"],
                    "caught_up": m["caught_up"],
                    "deferred_until": m["deferred_until"],
                }
                for m in deferred
            ],
            **records.deferred_summary(row, today),
        }
    pledged = [
        m.get("name") for m in application.get("materials", []) if m.get("status") == "pledged"
    ]
    if pledged:
        # 告知承诺: replaced by the applicant's signed commitment (may be verified later).
        result["pledged"] = pledged
    if "decision" in details:
        result["decision"] = {
            "outcome": details["decision"].get("outcome"),
            "reason": details["decision"].get("reason"),
        }
    if "dispatch" in details:
        d = details["dispatch"]
        result["dispatch"] = {k: d.get(k) for k in ("method", "courier", "tracking_no")}
    return result
