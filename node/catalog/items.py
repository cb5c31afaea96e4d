"""Reading the catalogue: our items, partners' cached ones, one region's items, one item by
code, and how current each partner's cached catalogue is."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from node.catalog.models import catalog_regions, partner_catalogs
from node.catalog.models import items as items_table
from node.storage.database import Database
from protocol.catalog import ITEM_CODE_RE, Item


async def our_items(db: Database, *, include_retired: bool = False) -> list[Item]:
    """Our catalogue, by code; retired items only when asked for."""
    query = select(items_table.c.data, items_table.c.retired).order_by(items_table.c.code)
    if not include_retired:
        query = query.where(items_table.c.retired.is_(False))
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [Item.from_dict(json.loads(r.data), retired=bool(r.retired)) for r in rows]


def _cached_item(entry: Mapping[str, Any]) -> Item:
    data = {k: v for k, v in entry.items() if k != "retired"}
    return Item.from_dict(data, retired=bool(entry.get("retired", False)))


async def partner_items(
    db: Database, region: str | None = None, *, include_retired: bool = False
) -> list[Item]:
    """Partners' cached items (of one partner if ``region`` is given), by region and code."""
    query = select(partner_catalogs.c["items"]).order_by(partner_catalogs.c.region)
    if region is not None:
        query = query.where(partner_catalogs.c.region == region)
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    found = [_cached_item(e) for r in rows for e in json.loads(r._mapping["items"])]
    return sorted(
        (i for i in found if include_retired or not i.retired),
        key=lambda i: (i.handling_region, i.code),
    )


async def read_region_items(
    conn: AsyncConnection, own_region: str, region: str
) -> list[Item] | None:
    """One region's current items by code, on ``conn``: ours when ``region`` is
    ``own_region``, else the partner's one cached row (only that row is parsed). None when we
    hold no catalogue of ``region``."""
    if region == own_region:
        rows = (
            await conn.execute(
                select(items_table.c.data)
                .where(items_table.c.retired.is_(False))
                .order_by(items_table.c.code)
            )
        ).all()
        return [Item.from_dict(json.loads(r.data)) for r in rows]
    cached = (
        await conn.execute(
            select(partner_catalogs.c["items"]).where(partner_catalogs.c.region == region)
        )
    ).first()
    if cached is None:
        return None
    found = (_cached_item(e) for e in json.loads(cached._mapping["items"]))
    # A partner's row holds only its own region's items (partner_cache.py checks); the filter
    # keeps a page of one region to that region whatever a row holds.
    return sorted(
        (i for i in found if not i.retired and i.handling_region == region),
        key=lambda i: i.code,
    )


async def region_items(db: Database, own_region: str, region: str) -> list[Item] | None:
    """One region's current items by code (:func:`read_region_items`)."""
    async with db.read() as conn:
        return await read_region_items(conn, own_region, region)


#: Partners' catalogues whose items :func:`get_item` keeps parsed, per database (least
#: recently used leaves first): the regions a hall deals with. About 1 MB each at 200 items.
CACHED_PARTNER_CATALOGS = 16

#: What changes a partner's cached catalogue: (region, issued_at, fetched_at); every stored
#: fetch moves ``fetched_at``, a 304 leaves both (and the items).
_PartnerKey = tuple[str, float | None, float | None]
_partner_entries: weakref.WeakKeyDictionary[
    Database, OrderedDict[_PartnerKey, dict[str, Mapping[str, Any]]]
] = weakref.WeakKeyDictionary()


def _entries_by_code(text: str) -> dict[str, Mapping[str, Any]]:
    return {str(e.get("code")): e for e in json.loads(text)}


async def get_item(db: Database, code: str) -> Item | None:
    """Our item ``code`` or a partner's cached one, retired ones included (``item.retired``
    tells): old cases must resolve their item; new applications should refuse a retired one.
    ``item.handling_region`` says whose it is.

    This backs the public ``/api/v1/catalog/{code}``: a string that is not an item code reads
    no partner's catalogue; a code reads its own region's row only, and a partner's row (some
    0.8 MB at 200 items) is parsed once per version, off the event loop, and kept for the
    regions asked for most (:data:`CACHED_PARTNER_CATALOGS`)."""
    text: str | None = None
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(items_table.c.data, items_table.c.retired).where(items_table.c.code == code)
            )
        ).first()
        if row is not None:
            return Item.from_dict(json.loads(row.data), retired=bool(row.retired))
        match = ITEM_CODE_RE.fullmatch(code)
        if match is None:
            # Not an item code (every catalogue's codes are checked against it): nothing to
            # find, and no reason to read any partner's catalogue for a made-up code.
            return None
        # A partner's catalogue lists its own region's items only: the code names the row.
        region = match.group(1)
        head = (
            await conn.execute(
                select(partner_catalogs.c.issued_at, partner_catalogs.c.fetched_at).where(
                    partner_catalogs.c.region == region
                )
            )
        ).first()
        if head is None:
            return None
        key: _PartnerKey = (region, head.issued_at, head.fetched_at)
        cache = _partner_entries.setdefault(db, OrderedDict())
        entries = cache.get(key)
        if entries is None:
            # The row with its own version (another replica may have stored it just now).
            stored = (
                await conn.execute(
                    select(
                        partner_catalogs.c["items"],
                        partner_catalogs.c.issued_at,
                        partner_catalogs.c.fetched_at,
                    ).where(partner_catalogs.c.region == region)
                )
            ).first()
            if stored is None:
                return None
            key = (region, stored.issued_at, stored.fetched_at)
            text = stored._mapping["items"]
    if entries is None:
        assert text is not None
        # A worker thread: a partner's whole catalogue is too much JSON to parse on the loop.
        entries = await asyncio.to_thread(_entries_by_code, text)
        cache[key] = entries
        while len(cache) > CACHED_PARTNER_CATALOGS:
            cache.popitem(last=False)
    cache.move_to_end(key)
    entry = entries.get(code)
    return None if entry is None else _cached_item(entry)


@dataclass(frozen=True)
class PartnerCatalogStatus:
    """How current our copy of a partner's catalogue is."""

    region: str
    items: int
    issued_at: float | None
    fetched_at: float | None
    attempted_at: float | None
    error: str | None


async def partner_catalog_status(
    db: Database, *, offset: int = 0, limit: int | None = None
) -> list[PartnerCatalogStatus]:
    """How current each partner's cached catalogue is, by region (a page of them with
    ``offset``/``limit``). Item counts come from the search index (node/catalog/index.py keeps
    them with the cache), so no cached catalogue is read: at 3,000 partners that would be
    600,000 items parsed for one request."""
    query = (
        select(
            partner_catalogs.c.region,
            partner_catalogs.c.issued_at,
            partner_catalogs.c.fetched_at,
            partner_catalogs.c.attempted_at,
            partner_catalogs.c.error,
            func.coalesce(catalog_regions.c["items"], 0).label("current"),
        )
        .select_from(
            partner_catalogs.outerjoin(
                catalog_regions, catalog_regions.c.region == partner_catalogs.c.region
            )
        )
        .order_by(partner_catalogs.c.region)
        .offset(offset)
        .limit(limit)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        PartnerCatalogStatus(
            region=r.region,
            items=int(r.current),
            issued_at=r.issued_at,
            fetched_at=r.fetched_at,
            attempted_at=r.attempted_at,
            error=r.error,
        )
        for r in rows
    ]


async def count_partner_catalogs(db: Database) -> int:
    """How many partners we hold (or tried to fetch) a catalogue of."""
    async with db.read() as conn:
        count = await conn.execute(select(func.count()).select_from(partner_catalogs))
    return int(count.scalar_one())


async def partner_fetched_at(db: Database, regions: Iterable[str]) -> dict[str, float | None]:
    """When the cached catalogue of each of ``regions`` was fetched (partners' only)."""
    wanted = sorted(set(regions))
    if not wanted:
        return {}
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(partner_catalogs.c.region, partner_catalogs.c.fetched_at).where(
                    partner_catalogs.c.region.in_(wanted)
                )
            )
        ).all()
    return {r.region: r.fetched_at for r in rows}
