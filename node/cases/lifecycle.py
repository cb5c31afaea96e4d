"""The case state machine (docs/cases.md): pure data and functions, no I/O.

Every action says which side of the case performs it (the receiving region 收件地 or the
handling region 办理地), which roles may, from which states, to which state, and which message
tells the other side. The front in node.cases.service checks an action against this table
before any handler runs, for staff and partner messages alike (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from node.cases.errors import CaseError, CaseErrorCode


class Status(StrEnum):
    RECEIVED = "received"  # 已接件
    FORWARDED = "forwarded"  # 已转交
    ACCEPTED = "accepted"  # 已受理
    NOT_ACCEPTED = "not_accepted"  # 不予受理
    SUPPLEMENT_PENDING = "supplement_pending"  # 补正中
    INSPECTION = "inspection"  # 勘验中
    APPROVED = "approved"  # 办结（准予）
    DENIED = "denied"  # 办结（不予）
    DISPATCHED = "dispatched"  # 已出件/寄递
    DELIVERED = "delivered"  # 已送达
    WITHDRAWN = "withdrawn"  # 已撤件


#: Chinese labels shown to people.
STATUS_LABELS: dict[Status, str] = {
    Status.RECEIVED: "已接件",
    Status.FORWARDED: "已转交",
    Status.ACCEPTED: "已受理",
    Status.NOT_ACCEPTED: "不予受理",
    Status.SUPPLEMENT_PENDING: "补正中",
    Status.INSPECTION: "勘验中",
    Status.APPROVED: "办结（准予）",
    Status.DENIED: "办结（不予）",
    Status.DISPATCHED: "已出件",
    Status.DELIVERED: "已送达",
    Status.WITHDRAWN: "已撤件",
}

#: Status codes common in provincial systems (docs/cases.md), kept for upward reporting.
PROVINCIAL_CODES: dict[Status, int] = {
    Status.RECEIVED: 1,
    Status.FORWARDED: 1,
    Status.ACCEPTED: 3,
    Status.NOT_ACCEPTED: 5,
    Status.SUPPLEMENT_PENDING: 6,
    Status.INSPECTION: 8,
    Status.APPROVED: 11,
    Status.DENIED: 13,
    Status.DISPATCHED: 11,
    Status.DELIVERED: 11,
    Status.WITHDRAWN: 14,
}

#: States from which a case can still be withdrawn, and whose clock may run.
OPEN: frozenset[Status] = frozenset(
    {
        Status.RECEIVED,
        Status.FORWARDED,
        Status.ACCEPTED,
        Status.SUPPLEMENT_PENDING,
        Status.INSPECTION,
    }
)
DECIDED: frozenset[Status] = frozenset({Status.APPROVED, Status.DENIED})
#: States after which nothing but rating and rectification happens.
CLOSED: frozenset[Status] = frozenset({Status.NOT_ACCEPTED, Status.DELIVERED, Status.WITHDRAWN})


class Side(StrEnum):
    RECEIVING = "receiving"  # 收件地: takes the application, hands over the result
    HANDLING = "handling"  # 办理地: accepts, inspects, decides


class Mode(StrEnum):
    PROXY = "proxy"  # 异地代收代办
    ONLINE = "online"  # 全程网办
    JOINT = "joint"  # 多地联办


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    #: The side that performs the action; None: either party (``case.error``).
    side: Side | None
    roles: frozenset[str]
    sources: frozenset[Status]
    #: The state after the action; None keeps the state (rate, rectify, progress, withdraw
    #: request); several targets are told apart by the action's input (decide).
    targets: frozenset[Status]
    #: The message that tells the other side, when the case spans two nodes.
    message: str | None
    #: Whether staff perform it through ``POST /api/v1/cases/{id}/actions/{name}`` (``submit``
    #: has routes of its own; ``partner_error`` only ever arrives from a partner).
    by_staff: bool = True


def _a(
    name: str,
    label: str,
    side: Side | None,
    roles: set[str],
    sources: set[Status],
    targets: set[Status],
    message: str | None,
    *,
    by_staff: bool = True,
) -> Action:
    return Action(
        name,
        label,
        side,
        frozenset(roles),
        frozenset(sources),
        frozenset(targets),
        message,
        by_staff,
    )


_AFTER_DECISION = {Status.APPROVED, Status.DENIED, Status.DISPATCHED, Status.DELIVERED}

ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        _a(
            "submit",
            "收件转交",
            Side.RECEIVING,
            {"clerk"},
            set(),
            {Status.FORWARDED},
            "case.submit",
            by_staff=False,
        ),
        _a(
            "accept",
            "受理",
            Side.HANDLING,
            {"approver"},
            {Status.RECEIVED, Status.FORWARDED},
            {Status.ACCEPTED},
            "case.accepted",
        ),
        _a(
            # 人证核验: an online application kept without a verified identity (``[identity]
            # allow_unverified_online``) is accepted only once staff at the handling region's
            # window have checked the applicant against their ID card and recorded how.
            "verify_identity",
            "人证核验",
            Side.HANDLING,
            {"clerk", "approver"},
            {Status.RECEIVED, Status.FORWARDED, Status.SUPPLEMENT_PENDING},
            set(),
            None,
        ),
        _a(
            "not_accept",
            "不予受理",
            Side.HANDLING,
            {"approver"},
            {Status.RECEIVED, Status.FORWARDED, Status.SUPPLEMENT_PENDING},
            {Status.NOT_ACCEPTED},
            "case.not_accepted",
        ),
        _a(
            "request_supplement",
            "补正通知",
            Side.HANDLING,
            {"approver"},
            {Status.RECEIVED, Status.FORWARDED, Status.ACCEPTED},
            {Status.SUPPLEMENT_PENDING},
            "case.supplement_requested",
        ),
        _a(
            "supplement",
            "补正材料",
            Side.RECEIVING,
            {"clerk"},
            {Status.SUPPLEMENT_PENDING},
            {Status.RECEIVED, Status.FORWARDED, Status.ACCEPTED},
            "case.supplemented",
        ),
        _a(
            "catch_up",
            "容缺补齐",
            Side.RECEIVING,
            {"clerk"},
            set(OPEN) | {Status.APPROVED},
            set(),
            "case.supplemented",
        ),
        _a(
            "schedule_inspection",
            "安排勘验",
            Side.HANDLING,
            {"approver", "inspector"},
            {Status.ACCEPTED, Status.INSPECTION},
            {Status.INSPECTION},
            "case.inspection_scheduled",
        ),
        _a(
            "complete_inspection",
            "完成勘验",
            Side.HANDLING,
            # An inspector signs a 勘验笔录; an approver may end a 云见面 (the handler checks).
            {"inspector", "approver"},
            {Status.INSPECTION},
            {Status.INSPECTION},
            "case.inspection_completed",
        ),
        _a(
            "decide",
            "办结决定",
            Side.HANDLING,
            {"approver"},
            {Status.ACCEPTED, Status.INSPECTION},
            {Status.APPROVED, Status.DENIED},
            "case.decided",
        ),
        _a(
            "dispatch",
            "出件",
            Side.RECEIVING,
            {"clerk"},
            {Status.APPROVED, Status.DENIED},
            {Status.DISPATCHED},
            "case.dispatched",
        ),
        _a(
            "deliver",
            "送达",
            Side.RECEIVING,
            {"clerk"},
            {Status.DISPATCHED},
            {Status.DELIVERED},
            "case.delivered",
        ),
        _a(
            "withdraw",
            "撤件",
            Side.RECEIVING,
            {"clerk"},
            set(OPEN),
            set(),
            "case.withdraw_requested",
        ),
        _a(
            "confirm_withdrawal",
            "确认撤件",
            Side.HANDLING,
            {"approver"},
            set(OPEN),
            {Status.WITHDRAWN},
            "case.withdrawn",
        ),
        _a(
            "rate",
            "好差评",
            Side.RECEIVING,
            # "citizen": the applicant on the public rating endpoint (never a staff role).
            {"clerk", "citizen"},
            {Status.ACCEPTED, Status.SUPPLEMENT_PENDING, Status.INSPECTION, Status.NOT_ACCEPTED}
            | _AFTER_DECISION,
            set(),
            "case.rated",
        ),
        _a(
            "rectify",
            "差评整改",
            Side.HANDLING,
            {"supervisor", "approver"},
            set(Status),
            set(),
            "case.rectified",
        ),
        _a(
            "progress",
            "办理进度",
            Side.HANDLING,
            {"approver"},
            {Status.ACCEPTED, Status.INSPECTION},
            set(),
            "case.progress",
        ),
        _a(
            # Personal data is shown masked; staff who need the full ID number and phone
            # (to call the applicant, to check a document) ask, and the asking is recorded.
            "reveal",
            "查看完整身份信息",
            None,
            {"clerk", "approver", "inspector"},
            set(Status),
            set(),
            None,
        ),
        _a(
            "partner_error",
            "对方退回说明",
            None,
            set(),
            set(Status),
            set(),
            "case.error",
            by_staff=False,
        ),
    )
}

#: The actions of the staff API (``POST /api/v1/cases/{id}/actions/{action}``).
API_ACTIONS = frozenset(name for name, action in ACTIONS.items() if action.by_staff)

#: Message type → the action it tells of. ``case.supplemented`` tells of two: 补正 materials,
#: or 容缺 catch-up (``deferred: true``); see ``action_for_message``.
MESSAGE_ACTIONS: dict[str, tuple[str, ...]] = {}
for _action in ACTIONS.values():
    if _action.message is not None:
        MESSAGE_ACTIONS.setdefault(_action.message, ())
        MESSAGE_ACTIONS[_action.message] += (_action.name,)


def action_for_message(typ: str, body: dict[str, Any]) -> Action | None:
    """The action a partner's message of type ``typ`` performs, or None for an unknown type."""
    names = MESSAGE_ACTIONS.get(typ)
    if not names:
        return None
    if typ == "case.supplemented":
        return ACTIONS["catch_up" if body.get("deferred") else "supplement"]
    return ACTIONS[names[0]]


def side_label(side: Side) -> str:
    return "收件地" if side is Side.RECEIVING else "办理地"


def check(action: Action, *, state: Status, role: str | None, sides: frozenset[Side]) -> None:
    """Refuse (CaseError) unless ``action`` may be performed on a case in ``state`` by one who
    holds ``sides`` of it in ``role``. ``role`` None is a partner node (its side is checked,
    not a role). The order is fixed: side, then role, then state."""
    if action.side is not None and action.side not in sides:
        raise CaseError(
            CaseErrorCode.WRONG_SIDE,
            f"「{action.label}」由{side_label(action.side)}办理",
            detail=f"{action.name} is performed by the {action.side} region",
        )
    if role is not None and role not in action.roles:
        raise CaseError(
            CaseErrorCode.FORBIDDEN,
            f"当前角色无权执行「{action.label}」",
            detail=f"role {role} may not {action.name}",
        )
    if action.sources and state not in action.sources:
        raise CaseError(
            CaseErrorCode.TRANSITION_NOT_ALLOWED,
            f"案件处于「{STATUS_LABELS[state]}」状态，不能执行「{action.label}」",
            detail=f"{action.name} not allowed in state {state}",
        )


def sides_of(
    mode: Mode, receiving_region: str, handling_region: str, region: str
) -> frozenset[Side]:
    """Which sides of a case ``region`` holds."""
    held = set()
    if mode is Mode.ONLINE or receiving_region == region:
        held.add(Side.RECEIVING)
    if handling_region == region:
        held.add(Side.HANDLING)
    return frozenset(held)
