"""出件 and 送达: the receiving region hands the result over (by mail or at the window)."""

from __future__ import annotations

import json
import re
from typing import Any

from node.cases import records, validation
from node.cases.actions import registry
from node.cases.actions.context import Step, clean, optional_text
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import Status
from protocol.envelope import Envelope

TRACKING_NO = re.compile(r"[A-Za-z0-9-]{4,40}")


@registry.staff("dispatch")
async def dispatch(step: Step, payload: dict[str, Any]) -> None:
    row = step.row
    if row.status == Status.APPROVED and row.deferred_until is not None:
        raise CaseError(
            CaseErrorCode.DEFERRED_OUTSTANDING,
            f"容缺材料尚未补齐（补齐期限 {row.deferred_until}），补齐后方可出件",
        )
    errors = validation.Errors()
    method = validation.choice(
        payload, "method", {"mail": "邮寄", "window": "窗口领取"}, errors, label="出件方式"
    )
    courier = tracking = None
    if method == "mail":
        courier = validation.text(payload, "courier", errors, label="快递公司", max_len=50)
        tracking = validation.text(payload, "tracking_no", errors, label="运单号", max_len=40)
        if tracking and not TRACKING_NO.fullmatch(tracking):
            errors.add(
                "tracking_no", "invalid_tracking_no", "运单号应为 4 到 40 位字母、数字或连字符"
            )
    errors.raise_if_any()
    body = clean(
        {
            "method": method,
            "courier": courier,
            "tracking_no": tracking,
            "dispatched_at": step.now_iso(),
        }
    )
    await _dispatched(step, body, records.Envelope("case.dispatched", body))


@registry.partner("dispatch")
async def dispatched(step: Step, env: Envelope) -> None:
    await _dispatched(step, env.body, None)


async def _dispatched(step: Step, body: dict[str, Any], envelope: records.Envelope | None) -> None:
    details = step.details
    details["dispatch"] = body
    await step.write(
        to_status=Status.DISPATCHED,
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event=body if envelope is not None else {},
        envelope=envelope,
    )


@registry.staff("deliver")
async def deliver(step: Step, payload: dict[str, Any]) -> None:
    recipient = optional_text(payload, "recipient", "签收人", 100)
    delivered_at = step.now_iso()
    method = step.details.get("dispatch", {}).get("method", "window")
    body = clean({"delivered_at": delivered_at, "method": method, "recipient": recipient})
    await _delivered(
        step, body, {"delivered_at": delivered_at}, records.Envelope("case.delivered", body)
    )


@registry.partner("deliver")
async def delivered(step: Step, env: Envelope) -> None:
    await _delivered(step, env.body, {}, None)


async def _delivered(
    step: Step,
    body: dict[str, Any],
    event: dict[str, Any],
    envelope: records.Envelope | None,
) -> None:
    details = step.details
    details["delivery"] = body
    await step.write(
        to_status=Status.DELIVERED,
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event=event,
        envelope=envelope,
    )
