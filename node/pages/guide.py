"""The public 办事指南 (no login): one page per item of this node's catalogue and of every
partner's cached one, a search that works on a phone without JavaScript, and a printable sheet
of QR codes for the hall, one per item, each leading to its guide page.

- ``GET /guide``: search by name, code or department (``q``) across every region through the
  search index (node/catalog/search.py), narrowed by province (``province``) or to one 办理地
  (``region``, whose own items are then read and matched on keywords too); paged (``page``,
  20 a page).
- ``GET /guide/{region}/{code}``: everything about one item, printable on A4.
- ``GET /guide/qr-sheet?region=…``: the hall's sheet, one QR code per item of a region.

No request reads more than one region's catalogue (node/catalog/versions.py reads a region's
items with their version). Every page is rendered at request time and says which version of the
region's catalogue it shows, so a loaded or refreshed catalogue changes the guide at the next
request. Bad input (a page number that is not one, an unknown region or province) gets a
Chinese page with a stable ``data-error`` code.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node.appkeys import CONFIG, DATABASE
from node.catalog.labels import DELIVERY_LABELS, FORM_LABELS, MODE_LABELS, RESULT_LABELS
from node.catalog.search import MAX_RESULTS, Entry, SearchQuery, region_choices, search
from node.catalog.versions import RegionCatalog, RegionVersion, region_catalog, region_version
from node.config import NodeConfig
from node.pages.office import region_names
from node.pages.qr import qr_svg
from node.pages.rendering import render
from protocol.catalog import MODES, Item
from protocol.regions import PROVINCES, province_of

#: Items on one page of search results.
PAGE_SIZE = 20
#: QR codes on one page of the hall's sheet: eight A4 sheets of twelve. Bounds the work of one
#: request (a code not made before costs some 10 ms of CPU, off the event loop).
QR_PAGE_SIZE = 96
#: The one thread that makes the guide's QR codes: never the event loop, and never more than
#: one core however many visitors ask for codes not made yet (the cache of node/pages/qr.py
#: makes each code once; a catalogue larger than the cache could otherwise keep every core
#: busy for anyone who pages through the QR sheets).
_QR_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guide-qr")
#: Longest search text kept, characters.
MAX_QUERY = 50
_REGION_CODE = re.compile(r"[1-9][0-9]{5}")
#: What the guide writes for a field the catalogue (or the hall's settings) leaves out.
NONE = "暂无"


class GuideError(Exception):
    """Bad input to a guide page: an HTTP status, a stable code and a Chinese message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def guide_url(config: NodeConfig, item: Item) -> str:
    """The absolute address of an item's guide page, from the node's configured URL."""
    return f"{config.url}/guide/{item.handling_region}/{item.code}"


def apply_url(item: Item) -> str:
    """Where a citizen applies online for one of this node's items (全程网办)."""
    return f"/apply/{item.code}"


def matches(item: Item, terms: list[str]) -> bool:
    """Every term is in the item's name, code, department or keywords (case-insensitive)."""
    text = " ".join((item.name, item.code, item.department, *item.keywords)).lower()
    return all(term in text for term in terms)


def search_terms(q: str) -> list[str]:
    return [t.lower() for t in q.split()]


def _page_number(request: web.Request) -> int:
    raw = request.query.get("page", "")
    if raw == "":
        return 1
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or int(raw) < 1:
        raise GuideError(400, "invalid_page", "页码应为正整数。")
    return int(raw)


def _unknown_region() -> GuideError:
    return GuideError(400, "unknown_region", "没有这个办理地的事项，请从列表中选择办理地。")


def _province_param(request: web.Request) -> str:
    province = request.query.get("province", "").strip()
    if province and province not in PROVINCES:
        raise GuideError(400, "invalid_province", "没有这个省份，请从列表中选择省份。")
    return province


def _region_param(request: web.Request, province: str) -> str:
    """The chosen 办理地: a 6-digit code, or "" for every region. A region outside the chosen
    province is dropped: on a page without script a visitor who picks another province leaves
    the old region selected, and means the new province."""
    region = request.query.get("region", "").strip()
    if region and not _REGION_CODE.fullmatch(region):
        raise _unknown_region()
    if region and province and province_of(region) != province:
        return ""
    return region


def _fee(item: Item) -> str:
    if item.fee.amount_fen:
        return f"{item.fee.description}（{item.fee.amount_fen / 100:.2f} 元）"
    return item.fee.description


def _channels(item: Item, config: NodeConfig, names: dict[str, str]) -> list[dict[str, Any]]:
    """Where to apply: this hall's window, online here, or the handling region's own portal."""
    own = item.handling_region == config.region
    region_name = names.get(item.handling_region, item.handling_region)
    hall = config.hall
    out: list[dict[str, Any]] = []
    if own or "proxy" in item.modes or "joint" in item.modes:
        if own:
            how = "本地事项，可直接到窗口申请"
        elif "proxy" in item.modes:
            how = f"异地代收代办：窗口收件后转交{region_name}办理，不必跑{region_name}"
        else:
            how = "多地联办：与其他地区的事项一起在窗口一次提交"
        out.append(
            {
                "kind": "window",
                "title": f"{hall.name or config.name + '政务服务中心'} 跨域通办窗口",
                "how": how,
                "link": None,
                "rows": [
                    ("窗口", hall.window or NONE),
                    ("地址", hall.address or NONE),
                    ("办公时间", hall.hours or NONE),
                    ("咨询电话", hall.phone or NONE),
                ],
            }
        )
    if "online" in item.modes:
        # Our own item is applied for on this node; a partner's on its own portal.
        how = "在线填写申请、上传材料，不用到现场" if own else f"在{region_name}政务服务网申请"
        out.append(
            {
                "kind": "online",
                "title": "网上办理（全程网办）",
                "how": how,
                "link": apply_url(item) if own else None,
                "rows": [],
            }
        )
    return out


def item_view(
    item: Item, region: RegionVersion, config: NodeConfig, names: dict[str, str]
) -> dict[str, Any]:
    """Everything the item page shows, in Chinese."""
    url = guide_url(config, item)
    region_name = names.get(item.handling_region, item.handling_region)
    return {
        "item": item,
        "url": url,
        "region_name": region_name,
        "version": region.version,
        "changed_at": region.changed_at,
        "own_catalog": region.own,
        "modes": [(m, MODE_LABELS[m], m in item.modes) for m in MODES],
        "materials": [
            {"m": m, "form_label": FORM_LABELS.get(m.form, m.form)} for m in item.materials
        ],
        "result": RESULT_LABELS.get(item.result_type, item.result_type),
        "delivery": [DELIVERY_LABELS.get(d, d) for d in item.delivery],
        "fee": _fee(item),
        "channels": _channels(item, config, names),
    }


def _qr_label(item: Item) -> str:
    return f"「{item.name}」办事指南二维码"


def _sheet_cells(config: NodeConfig, items: list[Item]) -> list[dict[str, Any]]:
    """The QR sheet's cells (run in a thread: making codes is CPU work)."""
    cells = []
    for item in items:
        url = guide_url(config, item)
        cells.append({"item": item, "url": url, "qr": qr_svg(url, label=_qr_label(item))})
    return cells


def _summary(item: Item, names: dict[str, str]) -> dict[str, Any]:
    return {
        "code": item.code,
        "name": item.name,
        "department": item.department,
        "region": item.handling_region,
        "region_name": names.get(item.handling_region, item.handling_region),
        "modes": [MODE_LABELS[m] for m in item.modes],
        "promised_limit_days": item.promised_limit_days,
        "href": f"/guide/{item.handling_region}/{item.code}",
    }


def _entry_summary(entry: Entry, names: dict[str, str]) -> dict[str, Any]:
    """A search result from the index row (no item is read)."""
    return {
        "code": entry.code,
        "name": entry.name,
        "department": entry.department,
        "region": entry.handling_region,
        "region_name": names.get(entry.handling_region, entry.region_name),
        "modes": [MODE_LABELS[m] for m in entry.modes if m in MODE_LABELS],
        "promised_limit_days": entry.summary.get("promised"),
        "href": f"/guide/{entry.handling_region}/{entry.code}",
    }


def _entry_text(entry: Entry) -> str:
    return " ".join((entry.code, entry.name, entry.department, entry.place)).lower()


@dataclass(frozen=True)
class _Found:
    results: list[dict[str, Any]]
    total: int
    pages: int
    #: More matches than the index counts (MAX_RESULTS): only the first are listed.
    capped: bool = False


async def _search_index(
    request: web.Request, q: str, province: str, page: int, names: dict[str, str]
) -> _Found:
    """Every region's items matching ``q`` (code, name, department, place; not keywords),
    ranked and capped by the index. Several words must all match: the index finds the longest
    one (its first MAX_RESULTS matches), the others are tested on those rows."""
    db = request.app[DATABASE]
    terms = q.split()
    if len(terms) <= 1:
        found = await search(
            db, SearchQuery(text=q, province=province, page=page), page_size=PAGE_SIZE
        )
        pages = _paged(found.total, page, PAGE_SIZE)
        return _Found(
            [_entry_summary(e, names) for e in found.entries], found.total, pages, found.capped
        )
    longest = max(terms, key=len)
    rest = search_terms(" ".join(t for t in terms if t is not longest))
    found = await search(db, SearchQuery(text=longest, province=province), page_size=MAX_RESULTS)
    matching = [e for e in found.entries if all(t in _entry_text(e) for t in rest)]
    pages = _paged(len(matching), page, PAGE_SIZE)
    shown = matching[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return _Found([_entry_summary(e, names) for e in shown], len(matching), pages, found.capped)


async def _region_list(
    request: web.Request, province: str, region: str, names: dict[str, str]
) -> list[tuple[str, str]]:
    """The 办理地 choices: our own region first, then the indexed regions of the province
    shown (the chosen one, the chosen region's, else our own), and the chosen region."""
    own = request.app[CONFIG].region
    listed = await region_choices(request.app[DATABASE], province)
    codes = [own, *(code for code, _name in listed if code != own)]
    if region and region not in codes:
        codes.append(region)
    indexed = dict(listed)
    return [(code, names.get(code) or indexed.get(code) or code) for code in codes]


def _version_row(version: RegionVersion | None, names: dict[str, str]) -> list[dict[str, Any]]:
    if version is None:
        return []
    return [
        {
            "region": version.region,
            "name": names.get(version.region, version.region),
            "version": version.version,
            "changed_at": version.changed_at,
            "own": version.own,
        }
    ]


def _pager(
    request: web.Request, params: dict[str, str], page: int, pages: int, size: int
) -> dict[str, Any]:
    """Links to the pages before and after ``page`` of this path, keeping ``params``."""

    def href(number: int) -> str:
        query = {k: v for k, v in params.items() if v}
        if number > 1:
            query["page"] = str(number)
        return str(request.url.with_query(query).relative())

    return {
        "page": page,
        "pages": pages,
        "first": (page - 1) * size + 1,
        "prev": href(page - 1) if page > 1 else None,
        "next": href(page + 1) if page < pages else None,
    }


def _paged(count: int, page: int, size: int) -> int:
    """The number of pages; GuideError ``invalid_page`` when ``page`` is past the last."""
    pages = max(1, math.ceil(count / size))
    if page > pages:
        raise GuideError(400, "invalid_page", f"没有第 {page} 页：共 {pages} 页。")
    return pages


def _fresh(response: web.Response) -> web.Response:
    """Public text without personal data, but always asked for again (``no-cache``): a loaded
    catalogue must show at once, not after a cache's lifetime."""
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _error_page(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """The guide's page for an unknown item or region, or bad paging: a Chinese message and
    the stable ``data-error`` code."""
    return _fresh(
        render(request, "guide/not_found.html", status=status, message=message, error_code=code)
    )


async def _region(request: web.Request, region: str) -> RegionCatalog | None:
    """One region's items and version (never more than that region's catalogue)."""
    return await region_catalog(request.app[DATABASE], request.app[CONFIG].region, region)


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/guide")
    async def search_page(request: web.Request) -> web.Response:
        own = request.app[CONFIG].region
        names = region_names(request)
        q = " ".join(request.query.get("q", "").split())[:MAX_QUERY]
        context: dict[str, Any] = {
            "q": q,
            "region": "",
            "province": "",
            "provinces": sorted(PROVINCES.items()),
            "own_region": own,
            "error": None,
            "capped": False,
            "max_results": MAX_RESULTS,
        }
        province = region = ""
        try:
            province = _province_param(request)
            region = _region_param(request, province)
            context.update(province=province or province_of(region), region=region)
            page = _page_number(request)
            if region:
                # One region: its own items, matched on keywords too.
                catalog = await _region(request, region)
                if catalog is None:
                    raise _unknown_region()
                terms = search_terms(q)
                matched = [i for i in catalog.items if matches(i, terms)]
                pages = _paged(len(matched), page, PAGE_SIZE)
                shown = matched[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
                found = _Found([_summary(i, names) for i in shown], len(matched), pages)
                version: RegionVersion | None = catalog
            else:
                found = await _search_index(request, q, province, page, names)
                version = await region_version(request.app[DATABASE], own, own)
        except GuideError as exc:
            context.update(
                error=exc,
                total=0,
                results=[],
                pager=None,
                versions=[],
                regions=await _region_list(
                    request, context["province"] or province_of(own), "", names
                ),
            )
            return _fresh(render(request, "guide/index.html", status=exc.status, **context))
        context.update(
            total=found.total,
            capped=found.capped,
            results=found.results,
            pager=_pager(
                request,
                {"q": q, "province": province, "region": region},
                page,
                found.pages,
                PAGE_SIZE,
            ),
            versions=_version_row(version, names),
            regions=await _region_list(
                request, context["province"] or province_of(own), region, names
            ),
        )
        return _fresh(render(request, "guide/index.html", **context))

    @table.get("/guide/qr-sheet")
    async def qr_sheet(request: web.Request) -> web.Response:
        config = request.app[CONFIG]
        code = request.query.get("region", "").strip() or config.region
        region = await _region(request, code)
        if region is None:
            return _error_page(request, 404, "not_found", "没有这个办理地的事项目录。")
        try:
            page = _page_number(request)
            pages = _paged(len(region.items), page, QR_PAGE_SIZE)
        except GuideError as exc:
            return _error_page(request, exc.status, exc.code, exc.message)
        names = region_names(request)
        shown = list(region.items[(page - 1) * QR_PAGE_SIZE : page * QR_PAGE_SIZE])
        loop = asyncio.get_running_loop()
        cells = await loop.run_in_executor(_QR_THREAD, _sheet_cells, config, shown)
        return _fresh(
            render(
                request,
                "guide/qr_sheet.html",
                region=region,
                region_name=names.get(region.region, region.region),
                cells=cells,
                pager=_pager(request, {"region": region.region}, page, pages, QR_PAGE_SIZE),
                page_size=QR_PAGE_SIZE,
            )
        )

    @table.get("/guide/{region}/{code}")
    async def item_page(request: web.Request) -> web.Response:
        region = await _region(request, request.match_info["region"])
        item = region.item(request.match_info["code"]) if region is not None else None
        if region is None or item is None:
            return _error_page(
                request,
                404,
                "not_found",
                "未找到该事项的办事指南：事项编码可能有误，或该事项已调整。请返回办事指南重新查找。",
            )
        view = item_view(item, region, request.app[CONFIG], region_names(request))
        make = functools.partial(qr_svg, view["url"], label=_qr_label(item), border=2)
        qr = await asyncio.get_running_loop().run_in_executor(_QR_THREAD, make)
        return _fresh(render(request, "guide/item.html", qr=qr, **view))

    return table
