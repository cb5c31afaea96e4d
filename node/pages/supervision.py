"""监督 (supervision): counts per partner, overdue and warning lists, open 差评 rectifications,
calendar coverage and the health of every partner link. Read-only."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from node.appkeys import CONFIG, DATABASE, FEDERATION, VIDEO_DESK
from node.cases import queries
from node.cases.lifecycle import STATUS_LABELS
from node.clock import today_in_china
from node.http_json import query_int
from node.pages.link_health import LinkHealth, link_health
from node.pages.office import region_names
from node.pages.paging import nav, paginate
from node.pages.rendering import render_page
from node.pages.session import page_staff
from node.videocalls import figures as video_figures
from node.workdays.service import read_calendar
from protocol.regions import PROVINCES, province_of

READERS = ("supervisor", "admin")
#: The highest page number a query may ask for.
MAX_PAGE = 10_000
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


#: Partners per page in the counts chart and table, and in the link health list.
COUNTS_PAGE = 20
LINKS_PAGE = 50
#: Problems first: the order of link levels on the page.
LEVEL_ORDER = {"problem": 0, "warning": 1, "ok": 2}


def count_order(row: dict[str, Any]) -> tuple[int, int, int, str]:
    """Partners with overdue cases first, then warning, then by how many cases."""
    by_time = row["by_time"]
    return (-by_time.get("overdue", 0), -by_time.get("warning", 0), -row["total"], row["region"])


def link_order(link: LinkHealth, now: float) -> tuple[int, float, int, str]:
    """Problem links first, then retrying ones; within a level the longest wait first."""
    return (LEVEL_ORDER[link.level], -(link.oldest_age(now) or 0.0), -link.depth, link.region)


def province_choices(regions: Iterable[str]) -> list[tuple[str, str, int]]:
    """The provinces the given regions lie in: (prefix, name, how many), by prefix."""
    counts = Counter(province_of(r) for r in regions)
    return [(p, PROVINCES[p], counts[p]) for p in sorted(counts) if p]


def _filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    province = q.get("province", "")
    level = q.get("level", "")
    return {
        "province": province if province in PROVINCES else "",
        "level": level if level in LINK_LEVELS else "",
        "page": query_int(request, "page", 1, 1, MAX_PAGE),
        "links_page": query_int(request, "links_page", 1, 1, MAX_PAGE),
    }


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/supervision")
    async def supervision(request: web.Request) -> web.Response:
        await page_staff(request, *READERS)
        today = today_in_china()
        names = region_names(request)
        wanted = _filters(request)
        federation = request.app[FEDERATION]
        partner_names = {code: p.name for code, p in federation.trust.partners.items()}
        async with request.app[DATABASE].read() as conn:
            board = await queries.supervision(conn, today=today)
            links = await link_health(conn, partner_names, federation.delivery.queues)
            calendar = await read_calendar(conn)
        now = time.time()
        own = request.app[CONFIG].region

        def in_province(region: str) -> bool:
            return not wanted["province"] or province_of(region) == wanted["province"]

        # Counts: the regions that have cases with us, problems first, a page at a time.
        rows = []
        for region, entry in board["partners"].items():
            total = sum(entry["by_status"].values())
            if not total or not in_province(region):
                continue
            rows.append(
                {
                    "region": region,
                    "name": names.get(region, region) + ("·本地" if region == own else ""),
                    "by_status": entry["by_status"],
                    "by_time": entry["by_time_status"],
                    "total": total,
                }
            )
        counts = paginate(sorted(rows, key=count_order), wanted["page"], COUNTS_PAGE)
        statuses = [
            (str(code), label)
            for code, label in STATUS_LABELS.items()
            if any(r["by_status"].get(str(code)) for r in counts.rows)
        ]
        # Link health: problems first, filtered by province and level, a page at a time.
        shown = [
            link
            for link in links
            if in_province(link.region) and (not wanted["level"] or link.level == wanted["level"])
        ]
        link_page = paginate(
            sorted(shown, key=lambda link: link_order(link, now)),
            wanted["links_page"],
            LINKS_PAGE,
        )
        levels = Counter(link.level for link in links if in_province(link.region))
        return await render_page(
            request,
            "supervision/index.html",
            rows=counts.rows,
            counts=counts,
            counts_nav=nav(request.query, "page", counts),
            statuses=statuses,
            time_order=TIME_ORDER,
            chart=time_chart(counts.rows),
            board=board,
            names=names,
            wanted=wanted,
            provinces=province_choices(partner_names),
            link_levels=[(k, label, levels.get(k, 0)) for k, (label, _) in LINK_LEVELS.items()],
            partner_count=len(partner_names),
            link_page=link_page,
            links_nav=nav(request.query, "links_page", link_page),
            link_rows=[
                {
                    "link": link,
                    "level_label": LINK_LEVELS[link.level][0],
                    "level_class": LINK_LEVELS[link.level][1],
                    "oldest_age": ago(link.oldest_age(now)),
                    "error_label": link_error(link.last_error),
                }
                for link in link_page.rows
            ],
            calendar_missing=calendar.missing_next_year(today),
            # 视频办 at a glance (the full figures: /video/figures).
            video=await video_figures.compute(request.app[DATABASE], request.app[VIDEO_DESK]),
            next_year=today.year + 1,
            today=today.isoformat(),
        )

    return table
