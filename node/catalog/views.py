"""HTTP routes of this area (thin: parse, call a service function, answer).

- ``GET /federation/v1/catalog``: our catalogue, a JWS signed with the node key (docs/protocol.md),
  with an ETag; ``If-None-Match`` naming it answers 304 Not Modified.
- ``GET /api/v1/catalog``: public list of our and partners' current items, with a summary of
  each; filters ``?region=``, ``?mode=``, ``?q=`` (in code, name or department).
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
from node.federation.runtime import Federation
from node.http_errors import ApiError
from protocol.catalog import MODES, Item

JOSE = "application/jose"


def _region_name(fed: Federation, region: str) -> str:
    if region == fed.identity.region:
        return fed.identity.name
    partner = fed.trust.partner(region)
    return partner.name if partner is not None else region


def _summary(item: Item, fed: Federation) -> dict[str, Any]:
    return {
        "code": item.code,
        "name": item.name,
        "department": item.department,
        "handling_region": item.handling_region,
        "handling_region_name": _region_name(fed, item.handling_region),
        "own": item.handling_region == fed.identity.region,
        "modes": list(item.modes),
        "mode_labels": [MODE_LABELS[m] for m in item.modes],
        "legal_limit_days": item.legal_limit_days,
        "promised_limit_days": item.promised_limit_days,
        "inspection_required": item.inspection.required,
        "materials": {
            "total": len(item.materials),
            "required": sum(1 for m in item.materials if m.required),
            "deferrable": sum(1 for m in item.materials if m.deferrable),
            "pledgeable": sum(1 for m in item.materials if m.pledgeable),
        },
    }


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


def _matches(item: Item, region: str | None, mode: str | None, query: str | None) -> bool:
    if region and item.handling_region != region:
        return False
    if mode and mode not in item.modes:
        return False
    if query:
        return any(query in text for text in (item.code, item.name, item.department))
    return True


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
        db = request.app[DATABASE]
        fed = request.app[FEDERATION]
        region = request.query.get("region") or None
        mode = request.query.get("mode") or None
        query = (request.query.get("q") or "").strip() or None
        if mode is not None and mode not in MODES:
            raise ApiError(
                400,
                "invalid_mode",
                "办理模式应为 proxy（异地代收代办）、online（全程网办）或 joint（多地联办）",
            )
        found = await catalog_items.our_items(db) + await catalog_items.partner_items(db)
        status = await catalog_items.partner_catalog_status(db)
        return web.json_response(
            {
                "items": [_summary(i, fed) for i in found if _matches(i, region, mode, query)],
                "partners": [
                    {
                        "region": s.region,
                        "name": _region_name(fed, s.region),
                        "items": s.items,
                        "fetched_at": s.fetched_at,
                    }
                    for s in status
                ],
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
