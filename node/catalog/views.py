"""HTTP routes of this area (thin: parse, call a service function, answer).

- ``GET /federation/v1/catalog``: our catalogue, a JWS signed with the node key (docs/protocol.md),
  with an ETag; ``If-None-Match`` naming it answers 304 Not Modified.
- ``GET /api/v1/catalog``: public, one page of our and partners' current items from the search
  index (node/catalog/search.py), ranked as the window's chooser ranks them, with a summary of
  each; ``?q=``, ``?mode=``, ``?province=``, ``?region=``, ``?page=``, ``?per_page=`` (≤ 100).
- ``GET /api/v1/catalog/partners``: public, how current our copy of each partner's catalogue
  is, 100 partners a page (``?page=``, ``?per_page=``).
- ``GET /api/v1/catalog/{code}``: one item in full, with Chinese labels: what the window tells
  the applicant at once (一次告知).
- ``POST /api/v1/catalog/refresh`` (admin): fetch partners' catalogues now.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts.auth import authenticate, require_role
from node.appkeys import CATALOG_REFRESHER, DATABASE, FEDERATION
from node.catalog import items as catalog_items
from node.catalog.labels import (
    DELIVERY_LABELS,
    FIELD_TYPE_LABELS,
    FORM_LABELS,
    MODE_LABELS,
    RESULT_LABELS,
)
from node.catalog.publishing import etag_matches, our_catalog
from node.catalog.refresher import CatalogRefresher
from node.catalog.search import Entry, SearchError, SearchQuery, search, summary_fields
from node.federation.runtime import Federation
from node.http_errors import ApiError
from protocol.catalog import Item

JOSE = "application/jose"
#: Items and partners a page of the public lists, by default and at most.
ITEMS_PER_PAGE = 20
PARTNERS_PER_PAGE = 100
MAX_PER_PAGE = 100


def _region_name(fed: Federation, region: str) -> str:
    if region == fed.identity.region:
        return fed.identity.name
    partner = fed.trust.partner(region)
    return partner.name if partner is not None else region


def _full(item: Item, fed: Federation) -> dict[str, Any]:
    data = item.to_dict()
    data["handling_region_name"] = _region_name(fed, item.handling_region)
    data["own"] = item.handling_region == fed.identity.region
    data["retired"] = item.retired
    data["mode_labels"] = [MODE_LABELS[m] for m in item.modes]
    data["result_type_label"] = RESULT_LABELS[item.result_type]
    data["delivery_labels"] = [DELIVERY_LABELS[d] for d in item.delivery]
    for material in data["materials"]:
        material["form_label"] = FORM_LABELS[material["form"]]
    for form_field in data["form_fields"]:
        form_field["type_label"] = FIELD_TYPE_LABELS[form_field["type"]]
    return data


def _entry_summary(entry: Entry, fed: Federation) -> dict[str, Any]:
    """An index entry as the list shows it (the item's facts the index keeps with it)."""
    facts = entry.summary
    return summary_fields(entry, _region_name(fed, entry.handling_region)) | {
        "own": entry.handling_region == fed.identity.region,
        "modes": list(entry.modes),
        "mode_labels": [MODE_LABELS[m] for m in entry.modes if m in MODE_LABELS],
        "materials": {
            "total": facts.get("materials", 0),
            "required": facts.get("required", 0),
            "deferrable": facts.get("deferrable", 0),
            "pledgeable": facts.get("pledgeable", 0),
        },
    }


def _page(request: web.Request) -> int:
    raw = request.query.get("page", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise ApiError(400, "invalid_page", "页码应为正整数")
    return int(raw)


def _per_page(request: web.Request, default: int) -> int:
    raw = request.query.get("per_page", "").strip() or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PER_PAGE:
        raise ApiError(400, "invalid_per_page", f"每页条数应为 1–{MAX_PER_PAGE} 的整数")
    return int(raw)


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/federation/v1/catalog")
    async def signed_catalog(request: web.Request) -> web.Response:
        fed = request.app[FEDERATION]
        published = await our_catalog(request.app[DATABASE], fed.identity)
        headers = {"ETag": published.etag, "Cache-Control": "no-cache"}
        if etag_matches(request.headers.get("If-None-Match"), published.etag):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=published.token.encode("ascii"), content_type=JOSE, headers=headers
        )

    @table.get("/api/v1/catalog")
    async def list_items(request: web.Request) -> web.Response:
        """One page of the catalogue index, ranked as the window's chooser ranks it."""
        try:
            query = SearchQuery.parse(request.query)
        except SearchError as exc:
            raise ApiError(400, exc.code, exc.message) from exc
        per_page = _per_page(request, ITEMS_PER_PAGE)
        found = await search(request.app[DATABASE], query, page_size=per_page)
        fed = request.app[FEDERATION]
        return web.json_response(
            {
                "items": [_entry_summary(e, fed) for e in found.entries],
                "page": found.page,
                "pages": found.pages,
                "per_page": per_page,
                "total": found.total,
                "capped": found.capped,
            }
        )

    @table.get("/api/v1/catalog/partners")
    async def list_partner_catalogs(request: web.Request) -> web.Response:
        """How current our copy of each partner's catalogue is, a page of partners at a time."""
        db = request.app[DATABASE]
        fed = request.app[FEDERATION]
        per_page = _per_page(request, PARTNERS_PER_PAGE)
        total = await catalog_items.count_partner_catalogs(db)
        pages = max(1, -(-total // per_page))
        page = min(_page(request), pages)
        status = await catalog_items.partner_catalog_status(
            db, offset=(page - 1) * per_page, limit=per_page
        )
        return web.json_response(
            {
                "partners": [
                    {
                        "region": s.region,
                        "name": _region_name(fed, s.region),
                        "items": s.items,
                        "fetched_at": s.fetched_at,
                    }
                    for s in status
                ],
                "page": page,
                "pages": pages,
                "per_page": per_page,
                "total": total,
            }
        )

    @table.get("/api/v1/catalog/{code}")
    async def get_item(request: web.Request) -> web.Response:
        item = await catalog_items.get_item(request.app[DATABASE], request.match_info["code"])
        if item is None:
            raise ApiError(404, "item_not_found", "事项不存在")
        return web.json_response(_full(item, request.app[FEDERATION]))

    @table.post("/api/v1/catalog/refresh")
    async def refresh(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, "admin")
        fed = request.app[FEDERATION]
        refresher = request.app.get(CATALOG_REFRESHER)
        if refresher is None:
            refresher = CatalogRefresher(
                request.app[DATABASE], fed.trust, fed.client, learn_keys=fed.refresher.refresh
            )
        results = await refresher.refresh_now()
        return web.json_response(
            {
                "partners": [
                    {
                        "region": region,
                        "name": _region_name(fed, region),
                        "ok": error is None,
                        "error": error,
                    }
                    for region, error in results.items()
                ]
            }
        )

    return table
