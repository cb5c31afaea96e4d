"""Deadlines and time status of a case, computed the same way on both nodes.

Inputs are stored on the case (accepted_on, time_limit_days, pauses), so a deadline can be
recomputed at any time — which is what happens when a new year's calendar is loaded and
provisional deadlines become final.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Protocol

#: Days before the deadline at which a case turns "warning", unless its item says otherwise.
DEFAULT_WARNING_DAYS = 3
#: 容缺: working days the applicant has to hand in a deferred material (provinces set 5 to
#: 30: ``[cases] deferred_days`` in tongban.toml).
DEFAULT_DEFERRED_DAYS = 10
#: Working days a rectification (整改) of a 差评 may take; provinces set 5 to 15 (``[cases]
#: rectification_days``).
DEFAULT_RECTIFICATION_DAYS = 10


class TimeStatus(StrEnum):
    NORMAL = "normal"
    WARNING = "warning"
    OVERDUE = "overdue"


TIME_STATUS_LABELS = {
    TimeStatus.NORMAL: "正常",
    TimeStatus.WARNING: "预警",
    TimeStatus.OVERDUE: "超期",
}


class DeadlineLike(Protocol):
    date: date
    provisional: bool


class Calendar(Protocol):
    def add_working_days(self, start: date, days: int) -> DeadlineLike: ...

    def working_days_between(self, start: date, end: date) -> int: ...

    def subtract_working_days(self, day: date, days: int) -> date: ...


@dataclass(frozen=True)
class DeadlineFields:
    promised_date: str
    deadline: str
    warning_from: str
    provisional: bool

    def as_columns(self) -> dict[str, Any]:
        return {
            "promised_date": self.promised_date,
            "deadline": self.deadline,
            "warning_from": self.warning_from,
            "deadline_provisional": self.provisional,
        }


def compute(
    calendar: Calendar,
    *,
    accepted_on: date,
    limit_days: int,
    pauses: list[list[Any]],
    warning_days: int = DEFAULT_WARNING_DAYS,
) -> DeadlineFields:
    """The promised date (fixed at 受理) and the deadline moved by every closed pause.

    A pause from d1 to d2 adds the working days in (d1, d2] to the deadline: the clock stops
    the day after the pause starts and runs again the day after it ends. The warning starts
    ``warning_days`` before the deadline, but never before half the time limit has
    run (``warning_lead``): an item of 3 working days is not 预警 from the day it is accepted.
    """
    promised = calendar.add_working_days(accepted_on, limit_days)
    paused_days = 0
    for start, end, *_reason in pauses:
        if end is not None:
            paused_days += calendar.working_days_between(
                date.fromisoformat(start), date.fromisoformat(end)
            )
    deadline = promised
    if paused_days:
        deadline = calendar.add_working_days(accepted_on, limit_days + paused_days)
    warning = calendar.subtract_working_days(deadline.date, warning_lead(warning_days, limit_days))
    return DeadlineFields(
        promised_date=promised.date.isoformat(),
        deadline=deadline.date.isoformat(),
        warning_from=warning.isoformat(),
        provisional=bool(promised.provisional or deadline.provisional),
    )


def warning_lead(warning_days: int, limit_days: int) -> int:
    """The working days before the deadline a case is 预警: the item's ``warning_days``, at
    most half the time limit (so that at least half of it is normal)."""
    return max(0, min(warning_days, limit_days // 2))


def catch_up(calendar: Calendar, *, start: date, days: int, warning_days: int) -> dict[str, Any]:
    """容缺: the catch-up deadline ``days`` working days after ``start`` (the day of 收件), the
    day its warning starts (``warning_days`` before, at most ``days``), and the inputs to
    recompute them from, as case columns."""
    lead = min(warning_days, days)
    until = calendar.add_working_days(start, days)
    return {
        "deferred_until": until.date.isoformat(),
        "deferred_warning_from": calendar.subtract_working_days(until.date, lead).isoformat(),
        "deferred_days": days,
        "deferred_warning_days": lead,
        "deferred_provisional": bool(until.provisional),
    }


def time_status(
    *, deadline: str | None, warning_from: str | None, paused_since: str | None, today: date
) -> TimeStatus:
    """Overdue after the deadline, warning from ``warning_from``; a paused case is judged as
    of the day its pause began (its clock is stopped)."""
    if deadline is None:
        return TimeStatus.NORMAL
    as_of = date.fromisoformat(paused_since) if paused_since else today
    if as_of > date.fromisoformat(deadline):
        return TimeStatus.OVERDUE
    if warning_from and as_of >= date.fromisoformat(warning_from):
        return TimeStatus.WARNING
    return TimeStatus.NORMAL


def catch_up_status(
    *, deferred_until: str | None, deferred_warning_from: str | None, today: date
) -> TimeStatus | None:
    """容缺: the time status of the catch-up of deferred materials (None when none is
    outstanding): overdue after ``deferred_until``, warning from ``deferred_warning_from``."""
    if deferred_until is None:
        return None
    if today > date.fromisoformat(deferred_until):
        return TimeStatus.OVERDUE
    if deferred_warning_from and today >= date.fromisoformat(deferred_warning_from):
        return TimeStatus.WARNING
    return TimeStatus.NORMAL
