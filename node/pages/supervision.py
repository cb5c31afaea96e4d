"""监督 (supervision): counts per partner, overdue and warning lists, open 差评 rectifications,
calendar coverage and the health of every partner link. Read-only."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from node.appkeys import CONFIG, DATABASE, FEDERATION, VIDEO_DESK
from node.cases import queries
from node.cases.lifecycle import STATUS_LABELS
from node.clock import today_in_china
from node.pages.link_health import link_health
from node.pages.office import region_names
from node.pages.rendering import render_page
from node.pages.session import page_staff
from node.videocalls import figures as video_figures
from node.workdays.service import read_calendar

READERS = ("supervisor", "admin")
TIME_ORDER = (
    ("normal", "正常", "#1a7f37"),
    ("warning", "预警", "#9a6700"),
    ("overdue", "超期", "#cf222e"),
)
LINK_LEVELS = {
    "ok": ("正常", "normal"),
    "warning": ("重试中", "warning"),
    "problem": ("异常", "overdue"),
}

#: What a partner's refusal or a transport failure means, for the supervisor (the raw text is
#: shown under it for the administrator).
LINK_ERRORS = {
    "unknown_case": "对方找不到该办件",
    "duplicate_case": "对方已有该办件（重复发送）",
    "not_a_party": "对方不是该办件的收件地或办理地",
    "not_deferred": "对方认为该材料不是容缺材料",
    "not_withdrawable": "该办件在对方已不能撤件",
    "unsupported_message": "对方不支持此类消息（版本不一致）",
    "evidence_digest_mismatch": "勘验证据校验不一致",
    "partner no longer in partners.toml": "对方已不在本节点的伙伴配置中",
}


def link_error(text: str | None) -> str:
    """The newest delivery error of a link in Chinese (empty when there is none)."""
    if not text:
        return ""
    code = text.split(":", 1)[0].strip()
    if code in LINK_ERRORS:
        return LINK_ERRORS[code]
    if text in LINK_ERRORS:
        return LINK_ERRORS[text]
    if "Timeout" in code:
        return "连接对方节点超时"
    if code.endswith(("Error", "Exception")):
        return "连接对方节点失败"
    return "对方节点拒收或出错"


def ago(seconds: float | None) -> str:
    """A duration for people: 刚刚, 12 分钟, 3 小时, 2 天."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "不到 1 分钟"
    if seconds < 3600:
        return f"{int(seconds // 60)} 分钟"
    if seconds < 86400:
        return f"{int(seconds // 3600)} 小时"
    return f"{int(seconds // 86400)} 天"


def time_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometry of a horizontal stacked bar chart: one bar per partner, normal/warning/overdue.

    Returns the SVG's size and, per partner, its label and segments (x, width, colour, count).
    """
    label_w, bar_w, bar_h, gap, top = 190, 380, 22, 14, 8
    biggest = max([sum(r["by_time"].values()) for r in rows] + [1])
    bars = []
    for index, row in enumerate(rows):
        y = top + index * (bar_h + gap)
        x = float(label_w)
        segments = []
        for key, label, colour in TIME_ORDER:
            count = int(row["by_time"].get(key, 0))
            if not count:
                continue
            width = bar_w * count / biggest
            segments.append(
                {
                    "x": round(x, 1),
                    "width": round(width, 1),
                    "colour": colour,
                    "count": count,
                    "label": label,
                }
            )
            x += width
        total = sum(row["by_time"].values())
        bars.append(
            {"y": y, "label": row["name"], "segments": segments, "total": total, "end": x + 6}
        )
    height = top * 2 + max(1, len(rows)) * (bar_h + gap)
    return {
        "width": label_w + bar_w + 60,
        "height": height,
        "bar_h": bar_h,
        "label_w": label_w,
        "bar_w": bar_w,
        "bars": bars,
    }


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/supervision")
    async def supervision(request: web.Request) -> web.Response:
        await page_staff(request, *READERS)
        today = today_in_china()
        names = region_names(request)
        federation = request.app[FEDERATION]
        partner_names = {code: p.name for code, p in federation.trust.partners.items()}
        async with request.app[DATABASE].read() as conn:
            board = await queries.supervision(conn, today=today)
            links = await link_health(conn, partner_names, federation.delivery.queues)
            calendar = await read_calendar(conn)
        now = time.time()
        own = request.app[CONFIG].region
        regions = sorted(set(board["partners"]) | set(partner_names))
        rows = []
        for region in regions:
            entry = board["partners"].get(region, {"by_status": {}, "by_time_status": {}})
            rows.append(
                {
                    "region": region,
                    "name": names.get(region, region) + ("·本地" if region == own else ""),
                    "by_status": entry["by_status"],
                    "by_time": entry["by_time_status"],
                    "total": sum(entry["by_status"].values()),
                }
            )
        statuses = [
            (str(code), label)
            for code, label in STATUS_LABELS.items()
            if any(r["by_status"].get(str(code)) for r in rows)
        ]
        return await render_page(
            request,
            "supervision/index.html",
            rows=rows,
            statuses=statuses,
            time_order=TIME_ORDER,
            chart=time_chart(rows),
            board=board,
            names=names,
            link_rows=[
                {
                    "link": link,
                    "level_label": LINK_LEVELS[link.level][0],
                    "level_class": LINK_LEVELS[link.level][1],
                    "oldest_age": ago(link.oldest_age(now)),
                    "error_label": link_error(link.last_error),
                }
                for link in links
            ],
            calendar_missing=calendar.missing_next_year(today),
            # 视频办 at a glance (the full figures: /video/figures).
            video=await video_figures.compute(request.app[DATABASE], request.app[VIDEO_DESK]),
            next_year=today.year + 1,
            today=today.isoformat(),
        )

    return table
