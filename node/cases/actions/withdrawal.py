"""撤件: the window asks (``case.withdraw_requested``) and the handling region confirms at
once while the case is open; or the applicant asks the handling region directly and its staff
record who asked, when, how and why. Nobody withdraws a case nobody asked to withdraw."""

from __future__ import annotations

import json
from typing import Any

from node.cases import records, validation
from node.cases.actions import registry
from node.cases.actions.context import Step, clean
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import Status
from protocol.envelope import Envelope

CHANNELS = {"hall": "窗口当面", "phone": "电话", "mail": "书面"}


@registry.staff("withdraw")
async def withdraw(step: Step, payload: dict[str, Any]) -> None:
    """The window asks, for the applicant; on a case of one node, withdrawn at once."""
    errors = validation.Errors()
    reason = validation.text(payload, "reason", errors, label="撤件原因", max_len=500)
    errors.raise_if_any()
    assert reason is not None
    details = step.details
    if details.get("withdrawal", {}).get("requested"):
        raise CaseError(CaseErrorCode.WITHDRAWAL_PENDING, "撤件申请已提交，等待办理地确认")
    requested_at = step.now_iso()
    requester = {"kind": "window", "requested_at": requested_at, "channel": "window"}
    if not records.spans_two_nodes(step.row):
        await _withdrawn(step, reason, requester, send=False)
        return
    details["withdrawal"] = {"requested": True, "reason": reason, "requested_at": requested_at}
    await step.write(
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event={"reason": reason},
        envelope=records.Envelope(
            "case.withdraw_requested", {"reason": reason, "requested_at": requested_at}
        ),
    )


@registry.partner("withdraw")
async def withdraw_requested(step: Step, env: Envelope) -> None:
    """The window asked: the applicant may withdraw before the decision, confirmed at once."""
    requester = {"kind": "window", "requested_at": env.body["requested_at"], "channel": "window"}
    await _withdrawn(step, env.body["reason"], requester, send=True)


@registry.staff("confirm_withdrawal")
async def confirm_withdrawal(step: Step, payload: dict[str, Any]) -> None:
    """The applicant asked the handling region itself: record who, when, how and why."""
    errors = validation.Errors()
    reason = validation.text(payload, "reason", errors, label="撤件原因", max_len=500)
    given = payload.get("requested_by")
    requester: dict[str, Any] = {}
    if not isinstance(given, dict):
        errors.add(
            "requested_by",
            "required",
            "请记录申请人的撤件申请（申请人、申请时间、申请方式）",
        )
    else:
        name = validation.text(
            given, "name", errors, label="申请人", max_len=100, path="requested_by.name"
        )
        channel = validation.choice(
            given, "channel", CHANNELS, errors, label="申请方式", path="requested_by.channel"
        )
        when = validation.iso_datetime(given, "requested_at", errors, label="申请时间")
        if when is not None and when.timestamp() > step.now() + 300:
            errors.add("requested_by.requested_at", "in_future", "申请时间不能晚于现在")
        requester = {
            "kind": "applicant",
            "name": name,
            "channel": channel,
            "requested_at": when.isoformat(timespec="seconds") if when else None,
        }
    errors.raise_if_any()
    assert reason is not None
    await _withdrawn(step, reason, requester, send=True)


@registry.partner("confirm_withdrawal")
async def withdrawn(step: Step, env: Envelope) -> None:
    await _withdrawn(
        step, env.body.get("reason"), env.body.get("requested_by"), send=False, at=env.body
    )


async def _withdrawn(
    step: Step,
    reason: str | None,
    requester: dict[str, Any] | None,
    *,
    send: bool,
    at: dict[str, Any] | None = None,
) -> None:
    withdrawn_at = (at or {}).get("withdrawn_at") or step.now_iso()
    details = step.details
    previous = details.get("withdrawal", {})
    reason = reason or previous.get("reason")
    details["withdrawal"] = clean(
        {
            **previous,
            "withdrawn_at": withdrawn_at,
            "reason": reason,
            "requested_by": requester,
        }
    )
    envelope = (
        records.Envelope(
            "case.withdrawn",
            clean({"withdrawn_at": withdrawn_at, "reason": reason, "requested_by": requester}),
        )
        if send
        else None
    )
    await step.write(
        "withdrawn",
        to_status=Status.WITHDRAWN,
        changes={"details": json.dumps(details, ensure_ascii=False), **step.close_pause()},
        event=clean({"reason": reason, "requested_by": (requester or {}).get("kind")}),
        envelope=envelope,
    )
