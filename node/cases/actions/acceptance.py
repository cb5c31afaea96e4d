"""受理 and 不予受理: the handling region accepts a case (its clock starts) or refuses it."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from node.cases import records, validation
from node.cases.actions import registry
from node.cases.actions.context import Step, clean, optional_text
from node.cases.deadlines import DEFAULT_WARNING_DAYS, compute
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import Status
from protocol.envelope import Envelope


@registry.staff("accept")
async def accept(step: Step, payload: dict[str, Any]) -> None:
    if json.loads(step.row.application).get("identity_verified") is False:
        raise CaseError(
            CaseErrorCode.IDENTITY_NOT_VERIFIED,
            "申请人身份尚未核验：请先在窗口完成人证核验并记录，再受理",
        )
    item = await step.item()
    accepted_on = step.today()
    limit = int(item.promised_limit_days)
    warning_days = int(item.warning_days)
    fields = compute(
        await step.deps.calendar(),
        accepted_on=accepted_on,
        limit_days=limit,
        pauses=json.loads(step.row.pauses),
        warning_days=warning_days,
    )
    note = optional_text(payload, "note", "受理意见", 500)
    await step.write(
        to_status=Status.ACCEPTED,
        changes={
            "accepted_on": accepted_on.isoformat(),
            "time_limit_days": limit,
            "warning_days": warning_days,
            **fields.as_columns(),
        },
        event={"promised_date": fields.promised_date, "provisional": fields.provisional},
        envelope=records.Envelope(
            "case.accepted",
            clean(
                {
                    "accepted_on": accepted_on.isoformat(),
                    "time_limit_days": limit,
                    "promised_date": fields.promised_date,
                    "provisional": fields.provisional,
                    "warning_days": warning_days,
                    "approver": step.actor.name,
                    "note": note,
                }
            ),
        ),
    )


@registry.partner("accept")
async def accepted(step: Step, env: Envelope) -> None:
    body = env.body
    warning_days = int(body.get("warning_days", DEFAULT_WARNING_DAYS))
    fields = compute(
        await step.deps.calendar(),
        accepted_on=date.fromisoformat(body["accepted_on"]),
        limit_days=int(body["time_limit_days"]),
        pauses=json.loads(step.row.pauses),
        warning_days=warning_days,
    )
    await step.write(
        to_status=Status.ACCEPTED,
        changes={
            "accepted_on": body["accepted_on"],
            "time_limit_days": body["time_limit_days"],
            "warning_days": warning_days,
            **fields.as_columns(),
        },
        event=clean({"promised_date": body["promised_date"], "by": body.get("approver")}),
    )


@registry.staff("not_accept")
async def not_accept(step: Step, payload: dict[str, Any]) -> None:
    errors = validation.Errors()
    reason = validation.text(payload, "reason", errors, label="不予受理理由", max_len=1000)
    basis = validation.text(
        payload, "legal_basis", errors, label="法律依据", max_len=500, required=False
    )
    errors.raise_if_any()
    await step.write(
        to_status=Status.NOT_ACCEPTED,
        changes=step.close_pause(),
        event={"reason": reason},
        envelope=records.Envelope(
            "case.not_accepted",
            clean({"reason": reason, "legal_basis": basis, "approver": step.actor.name}),
        ),
    )


@registry.partner("not_accept")
async def not_accepted(step: Step, env: Envelope) -> None:
    await step.write(
        to_status=Status.NOT_ACCEPTED,
        changes=step.close_pause(),
        event={"reason": env.body.get("reason")},
    )
