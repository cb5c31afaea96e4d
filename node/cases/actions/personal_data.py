"""查看完整身份信息: the case shows ID numbers and phones masked; staff who need them in full
(the window calling the applicant, an approver checking a document) say why, and every such
look is an event of the case's hash-chained log (docs/security.md)."""

from __future__ import annotations

from typing import Any

from node.cases import personal, validation
from node.cases.actions import registry
from node.cases.actions.context import Step

REASONS = {
    "contact": "联系申请人",
    "verify": "核对身份证件",
    "delivery": "寄递或送达结果",
    "other": "其他",
}


@registry.staff("reveal")
async def reveal(step: Step, payload: dict[str, Any]) -> None:
    errors = validation.Errors()
    reason = validation.choice(payload, "reason", REASONS, errors, label="查看原因")
    note = validation.text(payload, "note", errors, label="说明", max_len=200, required=False)
    if reason == "other" and not note:
        errors.add("note", "required", "请说明查看原因")
    errors.raise_if_any()
    await step.write(event={"reason": reason, "note": note} if note else {"reason": reason})
    step.result = {"revealed": personal.revealed(step.deps.sealer, step.row)}
