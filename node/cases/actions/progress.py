"""办理进度: the handling region pauses the clock for a special procedure (听证, 检验检测, 专家评审:
行政许可法 art. 45, not counted), resumes it, or extends the limit (art. 42)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from node.cases import records, validation
from node.cases.actions import registry
from node.cases.actions.context import Step, clean, warning_days
from node.cases.deadlines import compute
from node.cases.errors import CaseError, CaseErrorCode
from protocol.envelope import Envelope

PROCEDURES = {
    "hearing": "听证",
    "testing": "检验检测",
    "expert_review": "专家评审",
    "other": "其他",
}


@registry.staff("progress")
async def progress(step: Step, payload: dict[str, Any]) -> None:
    errors = validation.Errors()
    kind = validation.choice(
        payload,
        "kind",
        {"pause": "暂停计时", "resume": "恢复计时", "extension": "延期"},
        errors,
        label="进度类型",
    )
    reason = validation.text(payload, "reason", errors, label="原因", max_len=500)
    procedure = validation.choice(
        payload, "procedure", PROCEDURES, errors, label="特别程序", required=False
    )
    days = None
    if kind == "extension":
        days = validation.integer(
            payload, "extension_days", errors, label="延长天数", minimum=1, maximum=30
        )
    if procedure and kind != "pause":
        errors.add("procedure", "not_applicable", "特别程序只在暂停计时时填写")
    if kind == "pause" and step.row.paused:
        errors.add("kind", "already_paused", "计时已暂停")
    if kind == "resume" and not step.row.paused:
        errors.add("kind", "not_paused", "计时未暂停")
    errors.raise_if_any()
    body = clean(
        {
            "kind": kind,
            "reason": reason,
            "procedure": procedure,
            "extension_days": days,
            "on": step.today().isoformat(),
        }
    )
    await step.write(
        changes=await _changes(step, body),
        event=body,
        envelope=records.Envelope("case.progress", body),
    )


@registry.partner("progress")
async def progressed(step: Step, env: Envelope) -> None:
    kind = env.body["kind"]
    if (kind == "pause" and step.row.paused) or (kind == "resume" and not step.row.paused):
        raise CaseError(
            CaseErrorCode.TRANSITION_NOT_ALLOWED,
            "计时状态不符",
            detail=f"progress {kind} while {'paused' if step.row.paused else 'running'}",
        )
    await step.write(changes=await _changes(step, env.body), event=env.body)


async def _changes(step: Step, body: dict[str, Any]) -> dict[str, Any]:
    day = date.fromisoformat(body["on"])
    if body["kind"] == "pause":
        return step.open_pause(day, body["reason"])
    if body["kind"] == "resume":
        return await step.close_pause_and_recompute(day)
    row = step.row
    limit = int(row.time_limit_days or 0) + int(body["extension_days"])
    fields = compute(
        await step.deps.calendar(),
        accepted_on=date.fromisoformat(row.accepted_on),
        limit_days=limit,
        pauses=json.loads(row.pauses),
        warning_days=warning_days(row),
    )
    return {
        "time_limit_days": limit,
        "deadline": fields.deadline,
        "warning_from": fields.warning_from,
        "deadline_provisional": fields.provisional,
    }


@registry.partner("partner_error")
async def partner_error(step: Step, env: Envelope) -> None:
    """The other region refused one of our messages (``case.error``): keep it for staff."""
    details = step.details
    details.setdefault("errors", []).append(env.body)
    await step.write(
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event=env.body,
    )
