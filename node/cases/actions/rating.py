"""好差评 and 整改: a rating per stage (受理, 办结) of a case, taken by the window or given by
the applicant online; a 差评 (1 or 2) opens a rectification for the handling region, with a
deadline and a follow-up (回访)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import func, select, update

from node.cases import records, validation
from node.cases.actions import registry
from node.cases.actions.context import Step, clean
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import DECIDED, Side, Status
from node.cases.models import ratings
from protocol.envelope import Envelope

#: 好差评 channels (国办发〔2019〕51号): 1 PC, 2 mobile, 3 QR code, 4 hall tablet, 5 other hall
#: terminal, 6 phone, 7 SMS. Staff record the channel the applicant used; the citizen's own
#: endpoint is the mobile channel, whatever its caller says.
CITIZEN_CHANNEL = 2


def validate_rating(step: Step, payload: dict[str, Any], *, channel: int | None) -> dict[str, Any]:
    """The rating body of ``payload``; ``channel`` fixed by the endpoint (None: the staff's
    choice)."""
    errors = validation.Errors()
    level = validation.integer(payload, "level", errors, label="评价等级", minimum=1, maximum=5)
    stage = validation.choice(
        payload, "stage", {"accept": "受理", "decide": "办结"}, errors, label="评价环节"
    )
    if channel is None:
        channel = validation.integer(
            payload, "channel", errors, label="评价渠道", minimum=1, maximum=7
        )
    comment = validation.text(
        payload, "comment", errors, label="评价内容", max_len=1000, required=False
    )
    real_name = payload.get("real_name", True)
    if not isinstance(real_name, bool):
        errors.add("real_name", "invalid_type", "是否实名应为是或否")
    if stage == "decide" and Status(step.row.status) not in DECIDED | {
        Status.DISPATCHED,
        Status.DELIVERED,
    }:
        errors.add("stage", "not_yet_decided", "案件尚未办结，只能评价受理环节")
    if level is not None and level <= 2 and not comment:
        errors.add("comment", "required", "差评请填写具体意见，便于整改")
    errors.raise_if_any()
    return clean(
        {
            "rating_id": str(uuid.uuid4()),
            "level": level,
            "stage": stage,
            "channel": channel,
            "comment": comment,
            "real_name": real_name,
            "rated_at": step.now_iso(),
        }
    )


@registry.staff("rate")
async def rate(step: Step, payload: Any) -> None:
    """Staff record a rating the applicant gave; a citizen rates on their own endpoint."""
    channel = CITIZEN_CHANNEL if step.actor.role == "citizen" else None
    await _rated(step, validate_rating(step, payload, channel=channel), send=True)


@registry.partner("rate")
async def rated(step: Step, env: Envelope) -> None:
    await _rated(step, env.body, send=False)


async def _rated(step: Step, body: dict[str, Any], *, send: bool) -> None:
    row = step.row
    earlier = (
        await step.conn.execute(
            select(ratings.c.id).where(
                ratings.c.case_id == row.id, ratings.c.stage == body["stage"]
            )
        )
    ).first()
    if earlier is not None:
        raise CaseError(
            CaseErrorCode.ALREADY_RATED,
            "该环节已评价，每个环节只能评价一次",
            detail=f"stage {body['stage']} already rated",
        )
    due = None
    provisional = False
    days = step.deps.rectification_days
    if body["level"] <= 2 and Side.HANDLING in records.sides(row, step.deps.region):
        deadline = (await step.deps.calendar()).add_working_days(step.today(), days)
        due, provisional = deadline.date.isoformat(), bool(deadline.provisional)
    await step.conn.execute(
        ratings.insert().values(
            rating_id=body["rating_id"],
            case_id=row.id,
            level=body["level"],
            stage=body["stage"],
            channel=body["channel"],
            comment=body.get("comment"),
            real_name=body["real_name"],
            rated_at=step.now(),
            rectification_due=due,
            rectification_days=days if due else None,
            rectification_provisional=provisional,
        )
    )
    await step.write(
        changes={"rectification_due": due} if due else {},
        event={"level": body["level"], "stage": body["stage"], "rectification_due": due},
        envelope=records.Envelope("case.rated", body) if send else None,
    )


@registry.staff("rectify")
async def rectify(step: Step, payload: dict[str, Any]) -> None:
    errors = validation.Errors()
    rating_id = validation.text(payload, "rating_id", errors, label="评价编号", max_len=36)
    text_ = validation.text(payload, "rectification", errors, label="整改情况", max_len=2000)
    follow = payload.get("follow_up")
    follow_up = None
    if follow is not None:
        follow = follow if isinstance(follow, dict) else {}
        result = validation.text(
            follow, "result", errors, label="回访结果", max_len=1000, path="follow_up.result"
        )
        satisfied = follow.get("satisfied")
        if not isinstance(satisfied, bool):
            errors.add("follow_up.satisfied", "invalid_type", "请选择回访是否满意")
        follow_up = {
            "result": result,
            "satisfied": satisfied,
            "by": step.actor.name,
            "at": step.now_iso(),
        }
    errors.raise_if_any()
    body = clean(
        {
            "rating_id": rating_id,
            "rectification": text_,
            "follow_up": follow_up,
            "rectified_at": step.now_iso(),
        }
    )
    await _rectified(step, body, send=True)


@registry.partner("rectify")
async def rectified(step: Step, env: Envelope) -> None:
    await _rectified(step, env.body, send=False)


async def _rectified(step: Step, body: dict[str, Any], *, send: bool) -> None:
    row = step.row
    rating = (
        await step.conn.execute(
            select(ratings).where(
                ratings.c.rating_id == body["rating_id"], ratings.c.case_id == row.id
            )
        )
    ).first()
    if rating is None or rating.level > 2:
        raise CaseError(CaseErrorCode.RATING_NOT_FOUND, "没有需要整改的差评")
    if rating.rectified_at is not None:
        raise CaseError(CaseErrorCode.ALREADY_RECTIFIED, "该差评已整改")
    follow_up = body.get("follow_up")
    await step.conn.execute(
        update(ratings)
        .where(ratings.c.id == rating.id)
        .values(
            rectified_at=step.now(),
            rectification=body["rectification"],
            follow_up=json.dumps(follow_up, ensure_ascii=False) if follow_up else None,
        )
    )
    still_open = (
        await step.conn.execute(
            select(func.count())
            .select_from(ratings)
            .where(
                ratings.c.case_id == row.id,
                ratings.c.level <= 2,
                ratings.c.rectified_at.is_(None),
                ratings.c.rectification_due.is_not(None),
            )
        )
    ).scalar_one()
    await step.write(
        changes={"rectification_due": row.rectification_due if still_open else None},
        event={"rating_id": body["rating_id"]},
        envelope=records.Envelope("case.rectified", body) if send else None,
    )
