"""The current catalogue, ours and every partner's, as one in-memory snapshot for pages that
read all of it on every request (the public 办事指南, docs/pages.md).

A snapshot is rebuilt only when the catalogue's version changed: our items' count and newest
``updated_at`` (every load that adds, changes, restores or retires an item moves it), and each
partner row's ``issued_at`` and ``fetched_at`` (every stored fetch moves them). Reading those is
one small query per request; a load by another replica is seen at the next request.

Each region's catalogue gets a **version** people can quote: the first 12 hex digits of the
SHA-256 of its current items in their wire form (canonical JSON, by code). It changes exactly
when the content does, and it is the same on every node, so a citizen at a partner's hall and
one at the handling region's see the same version of that region's catalogue.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from node.catalog.items import our_items, partner_items
from node.catalog.models import items as items_table
from node.catalog.models import partner_catalogs
from node.storage.database import Database
from protocol.catalog import Item

#: Hex digits of a catalogue's version.
VERSION_DIGITS = 12

#: (our item count, our newest updated_at, each partner's (region, issued_at, fetched_at)).
VersionKey = tuple[int, float | None, tuple[tuple[str, float | None, float | None], ...]]


def catalog_version(items: Iterable[Item]) -> str:
    """The version of a region's catalogue: a digest of its current items' wire form."""
    listed = sorted((i.to_dict() for i in items), key=lambda d: str(d["code"]))
    text = json.dumps(listed, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:VERSION_DIGITS]


@dataclass(frozen=True)
class RegionCatalog:
    """One region's current (not retired) items, by code, and how current they are."""

    region: str
    own: bool
    items: tuple[Item, ...]
    version: str
    #: Ours: when an item last changed (a load). A partner's: when we last fetched and verified
    #: its catalogue (a partner signs it again on every fetch, changed or not, so the time it
    #: was signed says nothing; the version says whether the content changed).
    changed_at: float | None

    def item(self, code: str) -> Item | None:
        return next((i for i in self.items if i.code == code), None)


@dataclass(frozen=True)
class CatalogSnapshot:
    """Every current item this node knows, ours first, then the partners' by region."""

    key: VersionKey
    regions: tuple[RegionCatalog, ...]

    def region(self, code: str) -> RegionCatalog | None:
        return next((r for r in self.regions if r.region == code), None)

    def items(self, region: str | None = None) -> list[Item]:
        """Our items, then the partners' by region and code (of one region if given)."""
        return [i for r in self.regions if region in (None, r.region) for i in r.items]


_snapshots: weakref.WeakKeyDictionary[Database, CatalogSnapshot] = weakref.WeakKeyDictionary()


async def _version_key(db: Database) -> VersionKey:
    async with db.read() as conn:
        count, newest = (
            await conn.execute(select(func.count(), func.max(items_table.c.updated_at)))
        ).one()
        partners = (
            await conn.execute(
                select(
                    partner_catalogs.c.region,
                    partner_catalogs.c.issued_at,
                    partner_catalogs.c.fetched_at,
                ).order_by(partner_catalogs.c.region)
            )
        ).all()
    return (
        int(count),
        None if newest is None else float(newest),
        tuple((str(r.region), r.issued_at, r.fetched_at) for r in partners),
    )


async def catalog_snapshot(db: Database, region: str) -> CatalogSnapshot:
    """The current catalogue of this node (``region``) and its partners, rebuilt only when
    its version changed since the last call for ``db``."""
    key = await _version_key(db)
    cached = _snapshots.get(db)
    if cached is not None and cached.key == key:
        return cached
    ours = await our_items(db)
    regions = [
        RegionCatalog(
            region=region,
            own=True,
            items=tuple(ours),
            version=catalog_version(ours),
            changed_at=key[1],
        )
    ]
    theirs = await partner_items(db)
    fetched = {code: fetched_at for code, _issued, fetched_at in key[2]}
    by_region: dict[str, list[Item]] = {}
    for item in theirs:
        by_region.setdefault(item.handling_region, []).append(item)
    for code in sorted(by_region):
        if code == region:
            continue  # a partner row can only hold its own region's items; never ours
        listed = by_region[code]
        regions.append(
            RegionCatalog(
                region=code,
                own=False,
                items=tuple(listed),
                version=catalog_version(listed),
                changed_at=fetched.get(code),
            )
        )
    snapshot = CatalogSnapshot(key=key, regions=tuple(regions))
    _snapshots[db] = snapshot
    return snapshot
