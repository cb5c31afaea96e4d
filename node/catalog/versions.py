"""The version of one region's catalogue, and that region's current items read with it (for
pages that show one region at a time: the public 办事指南, docs/pages.md).

A region's catalogue gets a **version** people can quote: the first 12 hex digits of the
SHA-256 of its current items in their wire form (canonical JSON, by code). It changes exactly
when the content does, and it is the same on every node, so a citizen at a partner's hall and
one at the handling region's see the same version of that region's catalogue.

Parsing and digesting a region's 200 items on every request would be wasted work (some 50 ms
for 衡阳's 220), so per database a small LRU keeps the versions of :data:`CACHED_VERSIONS`
regions and a smaller one the parsed items of the :data:`CACHED_CATALOGS` regions read last
(the hall's own and the few a visitor is browsing), both keyed by what changes a region's
catalogue: for ours, our items' count and newest ``updated_at`` (every load that adds,
changes, restores or retires an item moves them); for a partner's, its cache row's
``issued_at`` and ``fetched_at`` (every stored fetch moves them). Reading that key is one small
query of that region only (the partner row by its primary key), so a load by another replica is
seen at the next request. Nothing here ever reads more than one region's catalogue.
"""

from __future__ import annotations

import functools
import hashlib
import json
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from node.catalog.items import read_region_items
from node.catalog.models import items as items_table
from node.catalog.models import partner_catalogs
from node.storage.database import Database
from protocol.catalog import Item

#: Hex digits of a catalogue's version.
VERSION_DIGITS = 12
#: Regions whose version a database's cache keeps (least recently used leaves first).
CACHED_VERSIONS = 512
#: Regions whose parsed items a database's cache keeps: a few MB each in memory at most.
CACHED_CATALOGS = 8

#: What changes a region's catalogue: (region, ours?, count or issued_at, updated_at or
#: fetched_at). ``None`` when we hold no catalogue of the region.
VersionKey = tuple[str, bool, float | None, float | None]


def catalog_version(items: Iterable[Item]) -> str:
    """The version of a region's catalogue: a digest of its current items' wire form."""
    listed = sorted((i.to_dict() for i in items), key=lambda d: str(d["code"]))
    text = json.dumps(listed, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:VERSION_DIGITS]


@dataclass(frozen=True)
class RegionVersion:
    """Which version of a region's catalogue we hold, and since when."""

    region: str
    own: bool
    version: str
    #: Ours: when an item last changed (a load). A partner's: when we last fetched and verified
    #: its catalogue (a partner signs it again on every fetch, changed or not, so the time it
    #: was signed says nothing; the version says whether the content changed).
    changed_at: float | None


@dataclass(frozen=True)
class RegionCatalog(RegionVersion):
    """One region's current (not retired) items, by code, with their version."""

    items: tuple[Item, ...] = ()

    def item(self, code: str) -> Item | None:
        return self._by_code.get(code)

    @functools.cached_property
    def _by_code(self) -> dict[str, Item]:
        return {i.code: i for i in self.items}


_versions: weakref.WeakKeyDictionary[Database, OrderedDict[VersionKey, str]] = (
    weakref.WeakKeyDictionary()
)
_catalogs: weakref.WeakKeyDictionary[Database, OrderedDict[VersionKey, RegionCatalog]] = (
    weakref.WeakKeyDictionary()
)


async def _version_key(conn: AsyncConnection, own_region: str, region: str) -> VersionKey | None:
    if region == own_region:
        count, newest = (
            await conn.execute(select(func.count(), func.max(items_table.c.updated_at)))
        ).one()
        return (region, True, float(count), None if newest is None else float(newest))
    row = (
        await conn.execute(
            select(partner_catalogs.c.issued_at, partner_catalogs.c.fetched_at).where(
                partner_catalogs.c.region == region
            )
        )
    ).first()
    if row is None:
        return None
    return (region, False, row.issued_at, row.fetched_at)


T = TypeVar("T")


def _cached(
    caches: weakref.WeakKeyDictionary[Database, OrderedDict[VersionKey, T]],
    db: Database,
    key: VersionKey,
) -> T | None:
    cache = caches.get(db)
    if cache is None or key not in cache:
        return None
    cache.move_to_end(key)
    return cache[key]


def _remember(
    caches: weakref.WeakKeyDictionary[Database, OrderedDict[VersionKey, T]],
    db: Database,
    key: VersionKey,
    value: T,
    size: int,
) -> None:
    cache = caches.setdefault(db, OrderedDict())
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


def _changed_at(key: VersionKey) -> float | None:
    return key[3]


async def region_catalog(db: Database, own_region: str, region: str) -> RegionCatalog | None:
    """``region``'s current items and their version (ours when ``region`` is ``own_region``),
    read in one transaction. None when we hold no current item of a partner ``region`` (our
    own region is always there, even empty)."""
    async with db.read() as conn:
        key = await _version_key(conn, own_region, region)
        if key is None:
            return None
        cached = _cached(_catalogs, db, key)
        if cached is not None:
            return cached
        listed = await read_region_items(conn, own_region, region)
    if listed is None or (not listed and region != own_region):
        return None
    version = _cached(_versions, db, key)
    if version is None:
        version = catalog_version(listed)
        _remember(_versions, db, key, version, CACHED_VERSIONS)
    catalog = RegionCatalog(
        region=region,
        own=region == own_region,
        version=version,
        changed_at=_changed_at(key),
        items=tuple(listed),
    )
    _remember(_catalogs, db, key, catalog, CACHED_CATALOGS)
    return catalog


async def region_version(db: Database, own_region: str, region: str) -> RegionVersion | None:
    """``region``'s version without its items: one small query when the version is cached
    (the items are read only to digest them). None as for :func:`region_catalog`."""
    async with db.read() as conn:
        key = await _version_key(conn, own_region, region)
    if key is not None:
        version = _cached(_versions, db, key)
        if version is not None:
            return RegionVersion(region, region == own_region, version, _changed_at(key))
    return await region_catalog(db, own_region, region)
