"""Search the catalogue index (node/catalog/index.py): every current item, ours and every
partner's, by code, name, department and place (region name, province), paged and ranked.

Ranking, tier by tier (docs/catalog.md §6):

0. the item whose code is the query (``430400-XK-0001``, any case);
1. items whose name starts with the query, by name;
2. our own items containing the query (code, name, department, place);
3. partners' items containing it, in index order.

A query that is an item code or its start from the region on (``430400``, ``430400-XK``,
``430400-xk-0001``) finds the item with that code, then the items whose code starts with it,
by code (the code index; names and departments hold no codes).

Without a query: our items, then partners', by code. Filters: mode, province, region (6-digit
code or part of a name). Only the first :data:`MAX_RESULTS` matches are counted and paged (a
window clerk narrows the query rather than leafing through thousands).

A query of 3 characters or more is looked up in the trigram index (FTS5 ``catalog_search`` /
pg_trgm); a query of 1–2 characters (shorter than a trigram: ``卫生``, ``衡阳``, ``证``) in the
grams index (``catalog_grams`` / the ``grams`` column), reduced to its letters and digits. With a
region filter the region's few hundred rows are scanned with LIKE instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, column, false, func, not_, or_, select, table
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncConnection

from node.catalog.index import PG_TEXT
from node.catalog.models import catalog_entries as entries
from node.catalog.models import catalog_regions
from node.storage.database import Database
from protocol.catalog import MODES
from protocol.regions import PROVINCES

#: Items on one page of results.
PAGE_SIZE = 20
#: Matches counted and paged at most.
MAX_RESULTS = 1000
#: Longest query, characters (longer ones are cut).
MAX_QUERY = 50
#: Regions a region-name filter may stand for.
MAX_REGIONS = 200

_DIGITS6 = re.compile(r"[1-9][0-9]{5}")
#: An item code or its start from the region on: ``430400``, ``430400-XK``, ``430400-XK-0001``.
_CODE_START = re.compile(r"[1-9][0-9]{5}(-[A-Z]{0,4}(-[0-9]{0,6})?)?")
_LAST = "\U0010ffff"


class SearchError(ValueError):
    """A search parameter refused: ``code`` is stable, ``message`` is for people (zh-CN)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    mode: str = ""
    province: str = ""
    region: str = ""
    page: int = 1
    #: Codes left out of the results (items a form has already chosen).
    exclude: tuple[str, ...] = ()

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> SearchQuery:
        """From request parameters ``q``, ``mode``, ``province``, ``region``, ``page``; refuses
        a bad mode, province or page with SearchError."""
        text = " ".join(params.get("q", "").split())[:MAX_QUERY]
        mode = params.get("mode", "").strip()
        if mode and mode not in MODES:
            raise SearchError(
                "invalid_mode",
                "办理模式应为 proxy（异地代收代办）、online（全程网办）或 joint（多地联办）",
            )
        province = params.get("province", "").strip()
        if province and province not in PROVINCES:
            raise SearchError("invalid_province", "省份应为两位行政区划代码，如 43（湖南省）")
        region = " ".join(params.get("region", "").split())[:MAX_QUERY]
        raw_page = params.get("page", "").strip() or "1"
        if not raw_page.isdigit() or not 1 <= int(raw_page) <= 10_000:
            raise SearchError("invalid_page", "页码应为正整数")
        return cls(text=text, mode=mode, province=province, region=region, page=int(raw_page))


@dataclass(frozen=True)
class Entry:
    code: str
    name: str
    department: str
    handling_region: str
    region_name: str
    place: str
    own: bool
    modes: tuple[str, ...]
    summary: dict[str, Any] = field(default_factory=dict)


def summary_fields(entry: Entry, region_name: str) -> dict[str, Any]:
    """The fields every list of entries shows alike (the API's and the window's chooser's):
    what identifies the item and the facts the index keeps with it (index.summary), with
    ``region_name`` as the caller names the handling region. Each caller adds its own modes
    and material counts (the API nests the counts, the chooser keeps its items' flat shape)."""
    facts = entry.summary
    return {
        "code": entry.code,
        "name": entry.name,
        "department": entry.department,
        "handling_region": entry.handling_region,
        "handling_region_name": region_name,
        "promised_limit_days": facts.get("promised"),
        "legal_limit_days": facts.get("legal"),
        "inspection_required": bool(facts.get("inspection")),
    }


@dataclass(frozen=True)
class SearchPage:
    query: SearchQuery
    entries: list[Entry]
    #: Matches counted (at most MAX_RESULTS).
    total: int
    #: True when there are more than MAX_RESULTS matches.
    capped: bool
    page: int
    pages: int


@dataclass(frozen=True)
class _Tier:
    where: list[ColumnElement[bool]]
    order: list[Any]
    fts: str | None = None  # SQLite FTS5 table joined on rowid = id
    match: str | None = None


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _short(text: str) -> str:
    """A 1–2 character query as the grams index holds it: letters and digits, lower case."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _like(text: str) -> ColumnElement[bool]:
    """Substring of code, name, department or place (the scan for a few rows)."""
    if len(text) >= 3:
        pattern = _like_pattern(text)
        return or_(
            *(
                c.ilike(pattern, escape="\\")
                for c in (entries.c.code, entries.c.name, entries.c.department, entries.c.place)
            )
        )
    short = _short(text)
    if not short:
        return false()
    pattern = _like_pattern(short)
    return or_(
        entries.c.name.ilike(pattern, escape="\\"),
        entries.c.department.ilike(pattern, escape="\\"),
        entries.c.place.ilike(pattern, escape="\\"),
        # The code's category (``XK``), as the grams index holds it.
        entries.c.code.like(f"______-{pattern.upper()}-%", escape="\\"),
    )


def _prefix(conn: AsyncConnection, text: str) -> ColumnElement[bool]:
    name = entries.c.name.collate("C") if conn.dialect.name == "postgresql" else entries.c.name
    return and_(name >= text, name < text + _LAST)


def _name_order(conn: AsyncConnection) -> list[Any]:
    if conn.dialect.name == "postgresql":
        return [entries.c.name.collate("C"), entries.c.code]
    return [entries.c.name, entries.c.code]


def _indexed_tier(conn: AsyncConnection, text: str, where: list[ColumnElement[bool]]) -> _Tier:
    """Partners' items containing ``text``, through the full-text index."""
    if conn.dialect.name == "postgresql":
        if len(text) >= 3:
            match = sql_text(f"{PG_TEXT} LIKE :pattern ESCAPE '\\'").bindparams(
                pattern=_like_pattern(text.lower())
            )
        else:
            short = _short(text)
            match = (
                sql_text("catalog_entries.grams @> ARRAY[CAST(:gram AS text)]").bindparams(
                    gram=short
                )
                if short
                else sql_text("false")
            )
        return _Tier([*where, match], [entries.c.id])  # type: ignore[list-item]
    if len(text) >= 3:
        return _Tier(where, [], fts="catalog_search", match='"' + text.replace('"', '""') + '"')
    short = _short(text)
    if not short:
        return _Tier([*where, false()], [entries.c.id])
    return _Tier(where, [], fts="catalog_grams", match=f'"{short}"')


def _select(tier: _Tier, *columns: Any, ordered: bool = True, few: bool = False) -> Select[Any]:
    """The tier's rows; ``ordered`` False for counting (no order to keep: PostgreSQL then stops
    at the limit instead of sorting every match). ``few``: the tier has fewer matches than are
    counted, so PostgreSQL should collect them from its index and sort them, not walk the
    primary key in order testing every row (``id + 0`` hides that order from the planner)."""
    query = select(*columns)
    if tier.fts is not None:
        fts = table(tier.fts, column("rowid"))
        query = query.select_from(fts.join(entries, entries.c.id == fts.c.rowid)).where(
            sql_text(f"{tier.fts} MATCH :match").bindparams(match=tier.match)
        )
        if ordered:
            query = query.order_by(fts.c.rowid)
    else:
        query = query.select_from(entries)
    query = query.where(*tier.where)
    if not ordered:
        return query
    if few and tier.order and tier.order[0] is entries.c.id:
        return query.order_by(entries.c.id + 0)
    return query.order_by(*tier.order)


async def _regions_named(conn: AsyncConnection, value: str) -> list[str]:
    if _DIGITS6.fullmatch(value):
        return [value]
    rows = await conn.execute(
        select(catalog_regions.c.region)
        .where(catalog_regions.c.name.like(_like_pattern(value), escape="\\"))
        .order_by(catalog_regions.c.region)
        .limit(MAX_REGIONS)
    )
    return list(rows.scalars())


async def _tiers(conn: AsyncConnection, query: SearchQuery) -> list[_Tier]:
    base: list[ColumnElement[bool]] = []
    if query.mode:
        base.append(entries.c.modes.contains(f" {query.mode} "))
    if query.province:
        base.append(entries.c.province == query.province)
    if query.exclude:
        base.append(entries.c.code.not_in(query.exclude))
    regions: list[str] | None = None
    if query.region:
        regions = await _regions_named(conn, query.region)
        base.append(entries.c.handling_region.in_(regions) if regions else false())
    # Ours by region (the few hundred rows of our region's index range), not by the boolean,
    # whose index the planner rightly ignores: half the values of a two-valued column.
    # Looked up first: with a subquery the planner cannot tell the list is one region long.
    own_regions = list(
        (
            await conn.execute(
                select(catalog_regions.c.region).where(catalog_regions.c.own.is_(True))
            )
        ).scalars()
    )
    own = entries.c.handling_region.in_(own_regions) if own_regions else false()
    partner = entries.c.own.is_(False)
    text = query.text
    if not text:
        return [
            _Tier([*base, own], [entries.c.code]),
            _Tier([*base, partner], [entries.c.code]),
        ]
    code = text.upper()
    if _CODE_START.fullmatch(code):
        # A code or its start: found by the code's own index, in code order (no substring
        # search: names and departments hold no codes).
        starts: ColumnElement[bool] = and_(entries.c.code > code, entries.c.code < code + _LAST)
        if conn.dialect.name == "postgresql":  # the text_pattern_ops index (migration 0018)
            starts = and_(entries.c.code != code, entries.c.code.startswith(code, autoescape=True))
        return [
            _Tier([*base, entries.c.code == code], [entries.c.code]),
            _Tier([*base, starts], [entries.c.code]),
        ]
    prefix = _prefix(conn, text)
    not_code = entries.c.code != code
    rest = [*base, not_code, not_(prefix)]
    tiers = [
        _Tier([*base, entries.c.code == code], [entries.c.code]),
        _Tier([*base, prefix, not_code], _name_order(conn)),
        _Tier([*rest, own, _like(text)], [entries.c.id]),
    ]
    if regions is not None:
        tiers.append(_Tier([*rest, partner, _like(text)], [entries.c.id]))
    else:
        tiers.append(_indexed_tier(conn, text, [*rest, partner]))
    return tiers


def _entry(row: Any, names: Mapping[str, str]) -> Entry:
    return Entry(
        code=row.code,
        name=row.name,
        department=row.department,
        handling_region=row.handling_region,
        region_name=names.get(row.handling_region, row.handling_region),
        place=row.place,
        own=bool(row.own),
        modes=tuple(row.modes.split()),
        summary=json.loads(row.summary),
    )


async def search(db: Database, query: SearchQuery, *, page_size: int = PAGE_SIZE) -> SearchPage:
    """One page of the items matching ``query``, ranked (module doc)."""
    async with db.read() as conn:
        tiers = await _tiers(conn, query)
        counts: list[int] = []
        full: list[bool] = []
        total = 0
        for tier in tiers:
            room = MAX_RESULTS + 1 - total
            if room <= 0:
                counts.append(0)
                full.append(True)
                continue
            inner = _select(tier, entries.c.id, ordered=False).limit(room).subquery()
            found = int((await conn.execute(select(func.count()).select_from(inner))).scalar_one())
            counts.append(found)
            full.append(found >= room)
            total += found
        capped = total > MAX_RESULTS
        total = min(total, MAX_RESULTS)
        pages = max(1, math.ceil(total / page_size))
        page = min(query.page, pages)
        skip = (page - 1) * page_size
        want = min(page_size, total - skip)
        rows: list[Any] = []
        for tier, count, many in zip(tiers, counts, full, strict=True):
            if want <= 0:
                break
            if skip >= count:
                skip -= count
                continue
            take = min(want, count - skip)
            statement = _select(tier, entries, few=not many).offset(skip).limit(take)
            rows.extend((await conn.execute(statement)).all())
            want -= take
            skip = 0
        regions = sorted({r.handling_region for r in rows})
        names = {
            r.region: r.name
            for r in (
                await conn.execute(
                    select(catalog_regions.c.region, catalog_regions.c.name).where(
                        catalog_regions.c.region.in_(regions)
                    )
                )
            ).all()
        }
    return SearchPage(
        query=query,
        entries=[_entry(r, names) for r in rows],
        total=total,
        capped=capped,
        page=page,
        pages=pages,
    )


async def region_choices(db: Database, province: str = "") -> list[tuple[str, str]]:
    """(code, name) of indexed regions of a province (for a region list; at most MAX_REGIONS)."""
    query = select(catalog_regions.c.region, catalog_regions.c.name).order_by(
        catalog_regions.c.region
    )
    if province:
        query = query.where(catalog_regions.c.province == province)
    async with db.read() as conn:
        rows = (await conn.execute(query.limit(MAX_REGIONS))).all()
    return [(r.region, r.name) for r in rows]
