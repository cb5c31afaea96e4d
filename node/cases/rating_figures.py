"""好差评 figures for supervision (国办发〔2019〕51号 reports them upward): per month, per
partner region and per item — ratings, 好评率 (levels 4 and 5), 差评 (1 and 2), 差评整改率 (差评
rectified) and 按期整改率 (差评 rectified by their deadline, of those with one: the handling
region's) — over the last twelve months."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases.models import cases, ratings
from node.clock import CHINA

#: How far back the figures reach, days.
WINDOW_DAYS = 366


@dataclass
class Tally:
    ratings: int = 0
    good: int = 0
    bad: int = 0
    rectified: int = 0
    with_deadline: int = 0
    on_time: int = 0
    names: set[str] = field(default_factory=set)

    def add(self, level: int, rectified_on: str | None, due: str | None) -> None:
        self.ratings += 1
        self.good += level >= 4
        if level <= 2:
            self.bad += 1
            self.rectified += rectified_on is not None
            if due is not None:
                self.with_deadline += 1
                self.on_time += rectified_on is not None and rectified_on <= due

    def as_json(self) -> dict[str, Any]:
        def rate(part: int, whole: int) -> float | None:
            return round(100 * part / whole, 1) if whole else None

        return {
            "ratings": self.ratings,
            "good_rate": rate(self.good, self.ratings),
            "bad": self.bad,
            "rectified_rate": rate(self.rectified, self.bad),
            "on_time_rate": rate(self.on_time, self.with_deadline),
        }


async def rating_figures(conn: AsyncConnection, *, now: float) -> dict[str, Any]:
    rows = (
        await conn.execute(
            select(
                ratings.c.level,
                ratings.c.rated_at,
                ratings.c.rectified_at,
                ratings.c.rectification_due,
                cases.c.partner_region,
                cases.c.item_code,
                cases.c.item_name,
            )
            .join(cases, cases.c.id == ratings.c.case_id)
            .where(ratings.c.rated_at >= now - WINDOW_DAYS * 86400)
        )
    ).all()
    months: dict[str, Tally] = {}
    partners: dict[str, Tally] = {}
    items: dict[str, Tally] = {}
    total = Tally()
    for r in rows:
        month = datetime.fromtimestamp(r.rated_at, CHINA).strftime("%Y-%m")
        rectified_on = _day(r.rectified_at).isoformat() if r.rectified_at is not None else None
        for table, key in ((months, month), (partners, r.partner_region), (items, r.item_code)):
            tally = table.setdefault(key, Tally())
            tally.add(r.level, rectified_on, r.rectification_due)
            if table is items:
                tally.names.add(r.item_name)
        total.add(r.level, rectified_on, r.rectification_due)
    return {
        "total": total.as_json(),
        "months": [{"month": k, **v.as_json()} for k, v in sorted(months.items(), reverse=True)],
        "partners": [
            {"region": k, **v.as_json()}
            for k, v in sorted(partners.items(), key=lambda kv: -kv[1].bad)
        ],
        "items": [
            {"item_code": k, "item_name": min(v.names), **v.as_json()}
            for k, v in sorted(items.items(), key=lambda kv: -kv[1].bad)
        ],
    }


def _day(moment: float) -> date:
    return datetime.fromtimestamp(moment, CHINA).date()
