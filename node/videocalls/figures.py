"""What supervisors see of 视频办: the queue now, waits (p50/p90), calls per day and
unanswered calls, over the last days (China dates)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from node.clock import CHINA
from node.storage.database import Database
from node.videocalls import service
from node.videocalls.desk import CallDesk
from node.videocalls.models import video_calls

DAYS = 7


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` 0..1) of ``values``, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def _summary(rows: list[Any]) -> dict[str, Any]:
    answered = [r for r in rows if r.picked_at is not None]
    waits = [r.picked_at - r.created_at for r in answered]
    to_frame = [r.connected_at - r.picked_at for r in answered if r.connected_at is not None]
    handled = [r.ended_at - r.picked_at for r in answered if r.ended_at is not None]
    rated = [r.rating_level for r in rows if r.rating_level is not None]
    return {
        "calls": len(rows),
        "answered": len(answered),
        "unanswered": sum(1 for r in rows if r.status in ("left", "expired")),
        "wait_p50_s": _round(percentile(waits, 0.5)),
        "wait_p90_s": _round(percentile(waits, 0.9)),
        "first_frame_p50_s": _round(percentile(to_frame, 0.5)),
        "handling_p50_s": _round(percentile(handled, 0.5)),
        "rated": len(rated),
        "satisfied": sum(1 for level in rated if level >= 3),
        "appointments": sum(1 for r in rows if r.appointment_at),
        "applications": sum(1 for r in rows if r.application_at),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def compute(db: Database, desk: CallDesk, *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, CHINA).date()
    first = today - timedelta(days=DAYS - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=CHINA).timestamp()
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(
                    video_calls.c.status,
                    video_calls.c.created_at,
                    video_calls.c.picked_at,
                    video_calls.c.connected_at,
                    video_calls.c.ended_at,
                    video_calls.c.rating_level,
                    video_calls.c.appointment_at,
                    video_calls.c.application_at,
                ).where(video_calls.c.created_at >= since)
            )
        ).all()
    by_day: dict[str, list[Any]] = {}
    for row in rows:
        day = datetime.fromtimestamp(row.created_at, CHINA).date().isoformat()
        by_day.setdefault(day, []).append(row)
    days = [
        {"date": (first + timedelta(days=i)).isoformat()}
        | _summary(by_day.get((first + timedelta(days=i)).isoformat(), []))
        for i in range(DAYS)
    ]
    return {
        "now": {
            "waiting": len(desk.queue),
            "in_calls": len(desk.live),
            "answering": desk.answering(now),
            "open": await desk.open_now(now),
            "callbacks_open": await service.count_open_callbacks(db),
        },
        "period": {"from": first.isoformat(), "to": today.isoformat()} | _summary(list(rows)),
        "days": list(reversed(days)),
    }
