"""The catalogue search index and the chooser's search (node/catalog/index.py, search.py) on a
real database: ranking, paging, filters, short queries, retired items, and the index kept in
step with the cache in the transaction that stores a catalogue."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from node.catalog import search as search_module
from node.catalog.index import ensure_index, grams, reindex
from node.catalog.loading import SAMPLES_DIR, load_catalog, parse_catalog
from node.catalog.models import catalog_entries, catalog_regions
from node.catalog.partner_cache import store_partner_catalog
from node.catalog.search import SearchError, SearchQuery, search
from node.storage.database import Database
from node.storage.migrate import upgrade
from protocol.catalog import Catalog, Item, sign_catalog
from protocol.keys import generate_private_key
from tests.support.databases import DatabaseFactory

OWN = ("430523", "邵阳县")
PARTNERS = {"430400": "衡阳市", "370500": "东营市"}
NAMES = {OWN[0]: OWN[1], **PARTNERS}


def sample(region: str) -> list[Item]:
    return parse_catalog(region, (SAMPLES_DIR / f"{region}.toml").read_text(encoding="utf-8"))


def variant(item: Item, serial: int, name: str, **changes: Any) -> Item:
    """A copy of ``item`` as another item of its region."""
    region = item.handling_region
    code = f"{region}-XK-{serial:04d}"
    return dataclasses.replace(item, code=code, name=name, **changes)


async def store(db: Database, region: str, items: list[Item], iat: float | None = None) -> None:
    """Store a partner's catalogue through the real storing path (signed token)."""
    moment = time.time() if iat is None else iat
    kid = f"{region}:test"
    token = sign_catalog(region, items, moment, generate_private_key(), kid)
    catalog = Catalog(region=region, iat=int(moment), items=tuple(items), signed_by=kid)
    await store_partner_catalog(
        db, token.encode("ascii"), catalog, moment, region_name=PARTNERS.get(region, "")
    )


@pytest.fixture
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await databases.new_url("search"))
    await upgrade(database)
    await load_catalog(database, OWN[0], sample(OWN[0]), region_name=OWN[1])
    for region in PARTNERS:
        await store(database, region, sample(region))
    yield database
    await database.dispose()


async def codes(db: Database, **params: Any) -> list[str]:
    page_size = params.pop("page_size", 100)
    found = await search(db, SearchQuery(**params), page_size=page_size)
    return [e.code for e in found.entries]


# -- ranking and matching ------------------------------------------------------------------


async def test_no_query_lists_our_items_then_partners_by_code(db: Database) -> None:
    assert await codes(db) == [
        "430523-XK-0001",
        "430523-XK-0002",
        "370500-DJ-0001",
        "370500-XK-0001",
        "430400-DJ-0001",
        "430400-XK-0001",
        "430400-XK-0002",
    ]


async def test_exact_code_first_then_name_prefix_then_own_then_partners(db: Database) -> None:
    hengyang = sample("430400")
    extra = [
        variant(hengyang[0], 10, "许可证遗失补办"),  # name starts with the query
        variant(hengyang[0], 11, "卫生许可延续"),
    ]
    await store(db, "430400", hengyang + extra, time.time() + 1)
    found = await codes(db, text="许可")
    # Name prefix first, then our own substring matches, then partners' in index order.
    assert found[0] == "430400-XK-0010"
    assert found[1:3] == ["430523-XK-0001", "430523-XK-0002"]
    assert set(found[3:]) == {
        "430400-XK-0001",
        "430400-XK-0002",
        "430400-XK-0011",
        "370500-XK-0001",
    }
    # The exact code (any case) comes before everything else it also matches.
    assert (await codes(db, text="430400-xk-0001"))[0] == "430400-XK-0001"
    assert await codes(db, text="430400-XK-0001") == ["430400-XK-0001"]
    # A code prefix finds the region's items (trigram over the code).
    assert sorted(await codes(db, text="430400-XK")) == [
        "430400-XK-0001",
        "430400-XK-0002",
        "430400-XK-0010",
        "430400-XK-0011",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 3 characters or more: the trigram index.
        ("公共场所", {"430400-XK-0002"}),
        (
            "行政审批服务局",
            {"430400-XK-0001", "430400-XK-0002", "370500-DJ-0001", "370500-XK-0001"},
        ),
        ("东营市", {"370500-DJ-0001", "370500-XK-0001"}),
        (
            "湖南省",
            {
                "430523-XK-0001",
                "430523-XK-0002",
                "430400-XK-0001",
                "430400-XK-0002",
                "430400-DJ-0001",
            },
        ),
        ("不动产登记（转移登记）", {"430400-DJ-0001"}),
        # An item code's start: by the code index.
        ("430400", {"430400-XK-0001", "430400-XK-0002", "430400-DJ-0001"}),
        ("430400-dj", {"430400-DJ-0001"}),
        # Not a whole region code: a substring of the codes (trigram index).
        ("4304", {"430400-XK-0001", "430400-XK-0002", "430400-DJ-0001"}),
        ("0002", {"430523-XK-0002", "430400-XK-0002"}),  # serials: substring of the code
        # 1–2 characters: the grams index (shorter than a trigram).
        ("卫生", {"430400-XK-0002"}),
        ("衡阳", {"430400-XK-0001", "430400-XK-0002", "430400-DJ-0001"}),
        ("山东", {"370500-DJ-0001", "370500-XK-0001"}),
        ("证", {"430523-XK-0001"}),
        (
            "xk",
            {
                "430523-XK-0001",
                "430523-XK-0002",
                "430400-XK-0001",
                "430400-XK-0002",
                "370500-XK-0001",
            },
        ),
        ("DJ", {"370500-DJ-0001", "430400-DJ-0001"}),
        ("（", set()),
        ("不存在的事项", set()),
        ("%", set()),
        ('"', set()),
    ],
)
async def test_matches_name_code_department_and_place(
    db: Database, text: str, expected: set[str]
) -> None:
    assert set(await codes(db, text=text)) == expected


async def test_region_scan_and_index_agree(db: Database) -> None:
    """With a region filter the region's rows are scanned (LIKE); without, the full-text
    indexes answer: the same query must find the same items either way."""
    for text in (
        "许可",
        "卫生",
        "证",
        "行政审批",
        "xk",
        "DJ",
        "衡阳",
        "湖南省",
        "施工许可",
        "0001",
    ):
        everywhere = await codes(db, text=text)
        for region in NAMES:
            scanned = await codes(db, text=text, region=region)
            assert scanned == [c for c in everywhere if c.startswith(region)], (text, region)


# -- filters -------------------------------------------------------------------------------


async def test_filters_by_mode_province_and_region(db: Database) -> None:
    joint = await codes(db, mode="joint")
    assert joint and all(
        "joint" in e.modes for e in (await search(db, SearchQuery(mode="joint"))).entries
    )
    assert set(await codes(db, province="37")) == {"370500-DJ-0001", "370500-XK-0001"}
    assert set(await codes(db, province="43", text="许可")) == {
        "430523-XK-0001",
        "430523-XK-0002",
        "430400-XK-0001",
        "430400-XK-0002",
    }
    assert await codes(db, province="11") == []
    by_code = await codes(db, region="430400")
    assert by_code == ["430400-DJ-0001", "430400-XK-0001", "430400-XK-0002"]
    assert await codes(db, region="衡阳") == by_code
    assert await codes(db, region="衡阳", province="37") == []
    assert await codes(db, region="不存在") == []
    assert await codes(db, region="430400", mode="proxy", text="卫生") == ["430400-XK-0002"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"mode": "fax"}, "invalid_mode"),
        ({"province": "99"}, "invalid_province"),
        ({"province": "4"}, "invalid_province"),
        ({"page": "0"}, "invalid_page"),
        ({"page": "-1"}, "invalid_page"),
        ({"page": "x"}, "invalid_page"),
        ({"page": "99999"}, "invalid_page"),
    ],
)
def test_bad_parameters_are_refused_with_a_stable_code(params: dict[str, str], code: str) -> None:
    with pytest.raises(SearchError) as caught:
        SearchQuery.parse(params)
    assert caught.value.code == code and caught.value.message


def test_query_is_trimmed_and_cut() -> None:
    query = SearchQuery.parse({"q": "  卫生   许可 " + "长" * 80, "page": "2"})
    assert query.text.startswith("卫生 许可 ") and len(query.text) == search_module.MAX_QUERY
    assert query.page == 2


# -- paging --------------------------------------------------------------------------------


async def test_pages_cover_every_match_once_in_rank_order(db: Database) -> None:
    everything = await codes(db, text="许可")
    seen: list[str] = []
    for page in range(1, 4):
        found = await search(db, SearchQuery(text="许可", page=page), page_size=2)
        assert found.total == len(everything) and found.pages == 3 and found.page == page
        seen += [e.code for e in found.entries]
    assert seen == everything
    # A page past the end shows the last page.
    last = await search(db, SearchQuery(text="许可", page=50), page_size=2)
    assert last.page == 3 and [e.code for e in last.entries] == everything[4:]


async def test_results_are_capped(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "MAX_RESULTS", 4)
    found = await search(db, SearchQuery(), page_size=3)
    assert found.capped and found.total == 4 and found.pages == 2
    second = await search(db, SearchQuery(page=2), page_size=3)
    assert len(second.entries) == 1
    exact = await search(db, SearchQuery(text="许可"), page_size=3)
    assert exact.capped and exact.total == 4
    assert not (await search(db, SearchQuery(text="卫生"), page_size=3)).capped


# -- the index in step with the cache ------------------------------------------------------


async def test_partner_catalogue_change_moves_the_index_in_the_same_store(db: Database) -> None:
    hengyang = sample("430400")
    renamed = dataclasses.replace(hengyang[1], name="公共场所卫生许可（变更）")
    await store(db, "430400", [hengyang[0], renamed], time.time() + 1)
    # Removed: gone from results (retired in the cache, not offered).
    assert await codes(db, text="不动产") == []
    assert await codes(db, text="转移登记") == []
    # Renamed: found by the new name, not the old one.
    assert await codes(db, text="（变更）") == ["430400-XK-0002"]
    assert await codes(db, text="（新办）") == ["430523-XK-0002"]
    entry = (await search(db, SearchQuery(text="430400-XK-0002"))).entries[0]
    assert entry.name == "公共场所卫生许可（变更）" and entry.region_name == "衡阳市"
    async with db.read() as conn:
        count = (
            await conn.execute(
                select(catalog_regions.c["items"]).where(catalog_regions.c.region == "430400")
            )
        ).scalar()
    assert count == 2
    # Listed again: back in the results.
    await store(db, "430400", hengyang, time.time() + 2)
    assert await codes(db, text="不动产") == ["430400-DJ-0001"]
    assert await codes(db, text="（变更）") == []


async def test_an_older_catalogue_changes_neither_cache_nor_index(db: Database) -> None:
    before = await codes(db)
    await store(db, "430400", sample("430400")[:1], time.time() - 3600)
    assert await codes(db) == before


async def test_our_load_retires_and_restores_in_the_index(db: Database) -> None:
    ours = sample(OWN[0])
    await load_catalog(db, OWN[0], ours[:1])
    assert await codes(db, text="食品经营") == []
    await load_catalog(db, OWN[0], ours)
    assert await codes(db, text="食品经营") == ["430523-XK-0002"]
    # The name for people is kept when a load does not give it.
    assert (await search(db, SearchQuery(text="食品经营"))).entries[0].region_name == "邵阳县"


async def test_a_failed_store_leaves_cache_and_index_as_they_were(db: Database) -> None:
    """The index is written on the storing transaction: when that transaction fails, neither
    moves."""
    before = await codes(db)
    bad = [*sample("430400"), sample("430400")[0]]  # one code twice: the unique code refuses
    with pytest.raises(Exception):  # noqa: B017 - any database error rolls everything back
        await store(db, "430400", bad, time.time() + 1)
    assert await codes(db) == before


async def test_reindex_and_ensure_index_rebuild_the_same_index(db: Database) -> None:
    before = {q: await codes(db, text=q) for q in ("", "许可", "卫生", "证", "衡阳", "湖南省")}
    async with db.write() as conn:
        await conn.execute(delete(catalog_entries))
        await conn.execute(delete(catalog_regions))
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql(
                "INSERT INTO catalog_search(catalog_search) VALUES('delete-all')"
            )
            await conn.exec_driver_sql(
                "INSERT INTO catalog_grams(catalog_grams) VALUES('delete-all')"
            )
    assert await codes(db) == []
    assert await ensure_index(db, OWN[0], NAMES) >= 1
    # The same matches; partners' substring matches come in index order (insertion order).
    assert {q: sorted(await codes(db, text=q)) for q in before} == {
        q: sorted(found) for q, found in before.items()
    }
    # A region's name for people changed (partners.toml): re-indexed under the new name.
    assert await ensure_index(db, OWN[0], {**NAMES, "430400": "衡阳"}) == 1
    assert (await search(db, SearchQuery(text="430400-XK-0001"))).entries[0].place == "湖南省 衡阳"
    assert await reindex(db, OWN[0], NAMES) == 7
    async with db.read() as conn:
        rows = (await conn.execute(select(func.count()).select_from(catalog_entries))).scalar()
    assert rows == 7


def test_grams_are_every_one_and_two_character_piece() -> None:
    assert grams("卫生 许可") == ["卫", "卫生", "生", "许", "许可", "可"]
    assert grams("ab") == ["a", "ab", "b"]
    assert grams("  ") == []
