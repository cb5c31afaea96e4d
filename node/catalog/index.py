"""The search index of the catalogue: one row per current item, ours and every partner's.

Every change of the index goes through :func:`index_region`, called by the functions that store
a catalogue (``loading.load_catalog`` for ours, ``partner_cache.store_partner_catalog`` for a
partner's) on *their* connection, so the index changes in the same transaction as the cache.
Retired items are not in the index: search offers only current items.

What is searched (docs/catalog.md §6):

- SQLite: ``catalog_search``, FTS5 with the trigram tokenizer over ``code``, ``name``,
  ``department``, ``place`` (external content: the text lives in ``catalog_entries`` only),
  for queries of 3 characters or more; ``catalog_grams``, a contentless FTS5 table of every 1-
  and 2-character gram (:func:`grams`), for shorter queries.
- PostgreSQL: a pg_trgm GIN index over :data:`PG_TEXT` and a GIN index over the ``grams``
  column (migration 0018_catalog_search), which this module fills.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.catalog.models import catalog_entries, catalog_regions, items, partner_catalogs
from node.storage.database import Database
from protocol.catalog import Item
from protocol.regions import PROVINCES, province_of

#: The searched text of a row on PostgreSQL (the pg_trgm index's expression, migration 0018).
PG_TEXT = "lower(code || ' ' || name || ' ' || department || ' ' || place)"

_FTS_COLUMNS = ("code", "name", "department", "place")
_COMPARED = ("name", "department", "place", "province", "modes", "own", "summary")


def grams_text(name: str, department: str, place: str, code: str) -> str:
    """The text whose 1- and 2-character grams are indexed: the name, department, place and the
    code's category (``XK``), lower case."""
    parts = code.split("-")
    category = parts[1] if len(parts) > 1 else ""
    return f"{name} {department} {place} {category}".lower()


def grams(value: str) -> list[str]:
    """Every distinct 1- and 2-character substring of ``value`` without white space, in order
    of first appearance."""
    seen: dict[str, None] = {}
    for i, ch in enumerate(value):
        if not ch.isspace():
            seen.setdefault(ch)
            nxt = value[i + 1 : i + 2]
            if nxt and not nxt.isspace():
                seen.setdefault(ch + nxt)
    return list(seen)


def _fts_grams(row: Mapping[Any, Any]) -> str:
    # unicode61 splits on punctuation: keep grams of letters and digits only (queries of 1–2
    # characters are reduced to letters and digits too, search.py).
    value = grams_text(row["name"], row["department"], row["place"], row["code"])
    return " ".join(g for g in grams(value) if all(ch.isalnum() for ch in g))


def place_of(region: str, region_name: str) -> str:
    """``湖南省 衡阳市``: the province's and the region's name (either may be unknown)."""
    province = PROVINCES.get(province_of(region), "")
    name = region_name if region_name and region_name != province else ""
    return " ".join(p for p in (province, name) if p)


def summary(item: Item) -> dict[str, Any]:
    """What the chooser shows of an item without loading it whole."""
    return {
        "modes": list(item.modes),
        "promised": item.promised_limit_days,
        "legal": item.legal_limit_days,
        "inspection": item.inspection.required,
        "materials": len(item.materials),
        "required": sum(1 for m in item.materials if m.required),
        "deferrable": sum(1 for m in item.materials if m.deferrable),
        "pledgeable": sum(1 for m in item.materials if m.pledgeable),
    }


def _values(item: Item, region_name: str, own: bool) -> dict[str, Any]:
    return {
        "code": item.code,
        "handling_region": item.handling_region,
        "province": province_of(item.handling_region),
        "name": item.name,
        "department": item.department,
        "place": place_of(item.handling_region, region_name),
        "modes": " " + " ".join(item.modes) + " ",
        "own": own,
        "summary": json.dumps(summary(item), ensure_ascii=False, separators=(",", ":")),
    }


async def _fts(conn: AsyncConnection, op: str, rows: Sequence[Mapping[Any, Any]]) -> None:
    """Add (``op`` "insert") or remove ("delete") rows of the SQLite full-text tables."""
    if not rows or conn.dialect.name != "sqlite":
        return
    cols = ", ".join(_FTS_COLUMNS)
    params = ", ".join(f":{c}" for c in _FTS_COLUMNS)
    if op == "delete":
        search = (
            f"INSERT INTO catalog_search(catalog_search, rowid, {cols}) "
            f"VALUES('delete', :id, {params})"
        )
        gram = "INSERT INTO catalog_grams(catalog_grams, rowid, grams) VALUES('delete', :id, :g)"
    else:
        search = f"INSERT INTO catalog_search(rowid, {cols}) VALUES(:id, {params})"
        gram = "INSERT INTO catalog_grams(rowid, grams) VALUES(:id, :g)"
    values = [{"id": r["id"], **{c: r[c] for c in _FTS_COLUMNS}} for r in rows]
    await conn.execute(text(search), values)
    await conn.execute(text(gram), [{"id": r["id"], "g": _fts_grams(r)} for r in rows])


async def index_region(
    conn: AsyncConnection,
    region: str,
    region_name: str | None,
    current: Iterable[Item],
    *,
    own: bool,
) -> None:
    """Make the index hold exactly ``current`` (the region's items not retired) for ``region``,
    on ``conn`` (the transaction that stores the catalogue). Unchanged rows are not touched.
    ``region_name`` None keeps the name the index has for the region."""
    if region_name is None:
        region_name = (
            await conn.execute(
                select(catalog_regions.c.name).where(catalog_regions.c.region == region)
            )
        ).scalar() or ""
    wanted = {i.code: _values(i, region_name, own) for i in current}
    if conn.dialect.name == "postgresql":
        for values in wanted.values():
            values["grams"] = grams(
                grams_text(values["name"], values["department"], values["place"], values["code"])
            )
    rows = (
        (
            await conn.execute(
                select(catalog_entries).where(catalog_entries.c.handling_region == region)
            )
        )
        .mappings()
        .all()
    )
    existing = {r["code"]: r for r in rows}
    gone = [r for c, r in existing.items() if c not in wanted]
    changed = [
        (r, wanted[c])
        for c, r in existing.items()
        if c in wanted and any(r[k] != wanted[c][k] for k in _COMPARED)
    ]
    added = [v for c, v in wanted.items() if c not in existing]
    await _fts(conn, "delete", gone + [r for r, _ in changed])
    if gone:
        await conn.execute(
            delete(catalog_entries).where(catalog_entries.c.id.in_([r["id"] for r in gone]))
        )
    for old, new in changed:
        await conn.execute(
            update(catalog_entries).where(catalog_entries.c.id == old["id"]).values(**new)
        )
    if added:
        await conn.execute(catalog_entries.insert(), added)
    touched = [v["code"] for _, v in changed] + [v["code"] for v in added]
    if touched:
        fresh = (
            (
                await conn.execute(
                    select(catalog_entries).where(
                        catalog_entries.c.handling_region == region,
                        catalog_entries.c.code.in_(touched),
                    )
                )
            )
            .mappings()
            .all()
        )
        await _fts(conn, "insert", fresh)
    await _index_region_row(conn, region, region_name, len(wanted), own)


async def _index_region_row(
    conn: AsyncConnection, region: str, name: str, count: int, own: bool
) -> None:
    await conn.execute(delete(catalog_regions).where(catalog_regions.c.region == region))
    if count:
        await conn.execute(
            catalog_regions.insert().values(
                region=region,
                name=name or region,
                province=province_of(region),
                items=count,
                own=own,
            )
        )


# -- filling the index from the caches ---------------------------------------------------------


def _partner_current(items_json: str) -> list[Item]:
    return [
        Item.from_dict({k: v for k, v in e.items() if k != "retired"})
        for e in json.loads(items_json)
        if not e.get("retired")
    ]


async def reindex(db: Database, own_region: str, names: Mapping[str, str]) -> int:
    """Rebuild the whole index from ``items`` and ``partner_catalogs`` (one transaction per
    region); returns the number of items indexed. ``names``: region → name for people."""
    async with db.read() as conn:
        own_rows = (
            await conn.execute(
                select(items.c.data).where(
                    items.c.retired.is_(False), items.c.handling_region == own_region
                )
            )
        ).all()
        regions = (
            (
                await conn.execute(
                    select(partner_catalogs.c.region).order_by(partner_catalogs.c.region)
                )
            )
            .scalars()
            .all()
        )
    total = 0
    own = [Item.from_dict(json.loads(r.data)) for r in own_rows]
    async with db.write() as conn:
        await index_region(conn, own_region, names.get(own_region, ""), own, own=True)
    total += len(own)
    for region in regions:
        async with db.write() as conn:
            cached = (
                await conn.execute(
                    select(partner_catalogs.c["items"]).where(partner_catalogs.c.region == region)
                )
            ).scalar_one()
            current = _partner_current(cached)
            await index_region(conn, region, names.get(region, ""), current, own=False)
        total += len(current)
    return total


async def ensure_index(db: Database, own_region: str, names: Mapping[str, str]) -> int:
    """At start: fill the index when it is empty while catalogues are cached (a database from
    before the index), and re-index regions whose name for people changed. Returns the number
    of regions (re)indexed."""
    async with db.read() as conn:
        indexed = {r.region: r.name for r in (await conn.execute(select(catalog_regions))).all()}
        entries = (await conn.execute(select(func.count()).select_from(catalog_entries))).scalar()
        cached = (await conn.execute(select(func.count()).select_from(partner_catalogs))).scalar()
        own = (
            await conn.execute(
                select(func.count()).select_from(items).where(items.c.retired.is_(False))
            )
        ).scalar()
    if not entries and (cached or own):
        await reindex(db, own_region, names)
        return len(indexed) or 1
    renamed = [r for r, name in indexed.items() if names.get(r) and names[r] != name]
    for region in renamed:
        if region == own_region:
            async with db.read() as conn:
                rows = (
                    await conn.execute(
                        select(items.c.data).where(
                            items.c.retired.is_(False), items.c.handling_region == region
                        )
                    )
                ).all()
            current = [Item.from_dict(json.loads(r.data)) for r in rows]
            async with db.write() as conn:
                await index_region(conn, region, names[region], current, own=True)
            continue
        async with db.write() as conn:
            cached_items = (
                await conn.execute(
                    select(partner_catalogs.c["items"]).where(partner_catalogs.c.region == region)
                )
            ).scalar()
            if cached_items is not None:
                current = _partner_current(cached_items)
                await index_region(conn, region, names[region], current, own=False)
    return len(renamed)
