"""The catalogue between real nodes: the signed endpoint, a partner fetching and caching it,
the refresher, the public and admin HTTP routes, and the `tongban catalog` commands."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from node.appkeys import CATALOG_REFRESHER
from node.catalog.items import get_item, partner_items
from node.catalog.loading import SAMPLES_DIR, load_catalog_file
from node.catalog.models import partner_catalogs
from node.catalog.partner_cache import CatalogRefreshError, refresh_partner_catalog
from node.catalog.refresher import CatalogRefresher, start_catalog_refresher, stop_catalog_refresher
from node.cli import main
from node.federation.identity import rotate_key
from node.storage.database import Database
from node.storage.migrate import upgrade
from protocol.catalog import verify_catalog
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import b64url_decode, b64url_encode
from protocol.strictjson import dumps, loads_object
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs
from tests.support.waiting import wait_until

SAMPLES = SAMPLES_DIR
PASSWORD = "tongban-demo"


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    nodes = [RunningNode(c) for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


async def fetch(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.content_type, await resp.read()


async def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def cached_row(node: RunningNode, region: str):  # type: ignore[no-untyped-def]
    async with node.db.read() as conn:
        return (
            await conn.execute(select(partner_catalogs).where(partner_catalogs.c.region == region))
        ).first()


async def add_user(
    monkeypatch: pytest.MonkeyPatch, node: RunningNode, username: str, role: str
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    argv = ["users", "add", "--dir", str(node.config.dir), "--username", username]
    assert await asyncio.to_thread(main, [*argv, "--role", role, "--password-stdin"]) == 0


async def login(node: RunningNode, username: str) -> dict[str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{node.url}/api/v1/login", json={"username": username, "password": PASSWORD}
        ) as resp,
    ):
        assert resp.status == 200
        return {"Authorization": f"Bearer {(await resp.json())['token']}"}


# -- the signed endpoint -------------------------------------------------------------------


async def test_signed_catalogue_verifies_with_the_node_key_and_tampering_fails(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    codes = await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    status, content_type, body = await fetch(f"{hengyang.url}/federation/v1/catalog")
    assert status == 200 and content_type == "application/jose"
    now = time.time()
    catalog = verify_catalog(body, hengyang.fed.identity.keyset(), "430400", now)
    assert [i.code for i in catalog.items] == sorted(codes)
    assert catalog.signed_by == hengyang.fed.identity.kid
    assert abs(catalog.iat - now) < 60
    # The partner verifies it with the keys partners.toml gave it.
    assert verify_catalog(body, shaoyang.fed.trust.keys, "430400", now).items == catalog.items
    header, payload, signature = body.decode("ascii").split(".")
    claims = loads_object(b64url_decode(payload))
    claims["items"][0]["promised_limit_days"] = 1
    forged = ".".join((header, b64url_encode(dumps(claims)), signature))
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(forged, shaoyang.fed.trust.keys, "430400", now)
    assert caught.value.code == ErrorCode.BAD_SIGNATURE


async def test_empty_catalogue_is_served_signed(pair: list[RunningNode]) -> None:
    hengyang = await pair[1].start()
    status, _type, body = await fetch(f"{hengyang.url}/federation/v1/catalog")
    assert status == 200
    assert verify_catalog(body, hengyang.fed.identity.keyset(), "430400", time.time()).items == ()


# -- partners' catalogues ------------------------------------------------------------------


async def test_partner_fetches_caches_and_finds_the_item(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    await load_catalog_file(shaoyang.db, "430523", SAMPLES / "430523.toml")
    fed = shaoyang.fed
    codes = await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    assert sorted(codes) == ["430400-DJ-0001", "430400-XK-0001", "430400-XK-0002"]
    item = await get_item(shaoyang.db, "430400-XK-0002")
    assert item is not None and not item.retired
    assert item.handling_region == "430400"
    assert item.name == "公共场所卫生许可（新办）"
    assert item.inspection.required
    own = await get_item(shaoyang.db, "430523-XK-0001")
    assert own is not None and own.handling_region == "430523"
    row = await cached_row(shaoyang, "430400")
    assert row.error is None and row.token and row.fetched_at
    assert verify_catalog(row.token, fed.trust.keys, "430400", time.time()).region == "430400"

    # 衡阳市 drops an item: the partner keeps it, retired, so old cases still resolve it.
    text = (SAMPLES / "430400.toml").read_text(encoding="utf-8")
    shorter = text[: text.index('code = "430400-DJ-0001"')].rsplit("[[items]]", 1)[0]
    path = hengyang.config.dir / "catalog.toml"
    path.write_text(shorter, encoding="utf-8")
    await load_catalog_file(hengyang.db, "430400", path)
    await asyncio.sleep(1.1)  # a newer iat
    codes = await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    assert sorted(codes) == ["430400-XK-0001", "430400-XK-0002"]
    retired = await get_item(shaoyang.db, "430400-DJ-0001")
    assert retired is not None and retired.retired
    assert [i.code for i in await partner_items(shaoyang.db)] == codes
    assert len(await partner_items(shaoyang.db, include_retired=True)) == 3


async def test_failed_refresh_is_recorded_and_keeps_the_cache(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    fed = shaoyang.fed
    await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    await hengyang.stop()
    with pytest.raises(CatalogRefreshError) as caught:
        await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    assert caught.value.region == "430400"
    row = await cached_row(shaoyang, "430400")
    assert row.error and row.attempted_at > row.fetched_at
    assert await get_item(shaoyang.db, "430400-XK-0001") is not None
    with pytest.raises(CatalogRefreshError):
        await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "110000")


async def test_older_catalogue_does_not_replace_a_newer_one(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    fed = shaoyang.fed
    await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    async with shaoyang.db.write() as conn:
        await conn.execute(
            partner_catalogs.update().values(issued_at=time.time() + 3600, items="[]")
        )
    codes = await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    assert codes == []
    assert await partner_items(shaoyang.db) == []


async def test_rotated_partner_key_is_learned_before_the_catalogue_is_refused(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    _old, new_kid = await rotate_key(hengyang.config, hengyang.db)
    await hengyang.fed.reload_identity()
    fed = shaoyang.fed
    with pytest.raises(CatalogRefreshError, match="unknown_kid"):
        await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    codes = await refresh_partner_catalog(
        shaoyang.db, fed.trust, fed.client, "430400", learn_keys=fed.refresher.refresh
    )
    assert len(codes) == 3
    assert fed.trust.keys.get(new_kid) is not None


async def test_refresher_fetches_at_start_and_on_demand(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = pair
    await hengyang.start()
    await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    await shaoyang.start()
    app = shaoyang.app
    assert app is not None
    # node.app starts the refresher; start one here if this app does not.
    started_here = CATALOG_REFRESHER not in app
    refresher = await start_catalog_refresher(app) if started_here else app[CATALOG_REFRESHER]
    try:

        async def cached(count: int) -> bool:
            return len(await partner_items(shaoyang.db)) == count

        await wait_until(lambda: cached(3))
        path = hengyang.config.dir / "catalog.toml"
        text = (SAMPLES / "430400.toml").read_text(encoding="utf-8")
        path.write_text(
            text[: text.index('code = "430400-DJ-0001"')].rsplit("[[items]]", 1)[0],
            encoding="utf-8",
        )
        await load_catalog_file(hengyang.db, "430400", path)
        await asyncio.sleep(1.1)  # a newer iat
        refresher.refresh_soon("430400")
        await wait_until(lambda: cached(2))
        assert await refresher.refresh_now() == {"430400": None}
    finally:
        if started_here:
            await stop_catalog_refresher(app)


async def test_refresher_retries_a_partner_that_was_down(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = pair
    await shaoyang.start()
    fed = shaoyang.fed
    # Never answered yet: its retries follow unanswered_retry_interval (docs/catalog.md §4).
    refresher = CatalogRefresher(
        shaoyang.db, fed.trust, fed.client, retry_interval=0.2, unanswered_retry_interval=0.2
    )
    refresher.start()
    try:

        async def failed() -> bool:
            row = await cached_row(shaoyang, "430400")
            return row is not None and row.error is not None

        await wait_until(failed)
        db = Database(hengyang.config.database_url)
        try:
            await upgrade(db)
            await load_catalog_file(db, "430400", SAMPLES / "430400.toml")
        finally:
            await db.dispose()
        await hengyang.start()

        async def fetched() -> bool:
            row = await cached_row(shaoyang, "430400")
            return row is not None and row.error is None and row.fetched_at is not None

        await wait_until(fetched)
        assert len(await partner_items(shaoyang.db)) == 3
    finally:
        await refresher.stop()


# -- HTTP routes ---------------------------------------------------------------------------


async def test_public_catalogue_lists_own_and_partner_items(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    await load_catalog_file(shaoyang.db, "430523", SAMPLES / "430523.toml")
    fed = shaoyang.fed
    await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")

    status, body = await get_json(f"{shaoyang.url}/api/v1/catalog")
    assert status == 200
    by_code = {i["code"]: i for i in body["items"]}
    assert list(by_code) == [
        "430523-XK-0001",
        "430523-XK-0002",
        "430400-DJ-0001",
        "430400-XK-0001",
        "430400-XK-0002",
    ]
    seed = by_code["430523-XK-0001"]
    assert seed["handling_region_name"] == "邵阳县" and seed["own"]
    assert seed["inspection_required"]
    assert seed["materials"] == {"total": 6, "required": 6, "deferrable": 1, "pledgeable": 1}
    health = by_code["430400-XK-0002"]
    assert health["handling_region"] == "430400"
    assert health["handling_region_name"] == "衡阳市" and not health["own"]
    assert health["modes"] == ["proxy", "online"]
    assert health["mode_labels"] == ["异地代收代办", "全程网办"]
    assert (body["page"], body["pages"], body["total"], body["capped"]) == (1, 1, 5, False)

    _status, body = await get_json(f"{shaoyang.url}/api/v1/catalog?region=430400&mode=joint")
    assert [i["code"] for i in body["items"]] == ["430400-DJ-0001"]
    _status, body = await get_json(f"{shaoyang.url}/api/v1/catalog?q=卫生")
    assert [i["code"] for i in body["items"]] == ["430400-XK-0002"]
    _status, body = await get_json(f"{shaoyang.url}/api/v1/catalog?province=43&per_page=2&page=2")
    assert [i["code"] for i in body["items"]] == ["430400-DJ-0001", "430400-XK-0001"]
    assert (body["page"], body["pages"], body["per_page"], body["total"]) == (2, 3, 2, 5)
    for query, code in (
        ("mode=window", "invalid_mode"),
        ("province=99", "invalid_province"),
        ("page=0", "invalid_page"),
        ("per_page=101", "invalid_per_page"),
        ("per_page=x", "invalid_per_page"),
    ):
        status, body = await get_json(f"{shaoyang.url}/api/v1/catalog?{query}")
        assert status == 400 and body["error"] == code, query

    status, body = await get_json(f"{shaoyang.url}/api/v1/catalog/partners")
    assert status == 200
    assert [(p["region"], p["name"], p["items"]) for p in body["partners"]] == [
        ("430400", "衡阳市", 3)
    ]
    assert body["partners"][0]["fetched_at"] is not None
    assert (body["page"], body["pages"], body["total"]) == (1, 1, 1)
    status, body = await get_json(f"{shaoyang.url}/api/v1/catalog/partners?page=abc")
    assert status == 400 and body["error"] == "invalid_page"


async def test_item_guide_has_everything_the_window_tells(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    fed = shaoyang.fed
    await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    status, item = await get_json(f"{shaoyang.url}/api/v1/catalog/430400-XK-0002")
    assert status == 200
    assert item["name"] == "公共场所卫生许可（新办）"
    assert item["handling_region_name"] == "衡阳市" and not item["retired"]
    assert item["legal_limit_days"] == 20 and item["promised_limit_days"] == 5
    assert item["result_type_label"] == "许可证"
    assert item["delivery_labels"] == ["窗口领取", "邮寄送达"]
    report = next(m for m in item["materials"] if m["code"] == "M04")
    assert report["deferrable"] and report["pledgeable"] and report["form_label"] == "原件"
    assert item["inspection"]["required"] and len(item["inspection"]["points"]) >= 3
    category = next(f for f in item["form_fields"] if f["name"] == "category")
    assert category["type_label"] == "选择" and "住宿场所" in category["options"]
    assert item["legal_basis"][0].startswith("《公共场所卫生管理条例》")
    status, body = await get_json(f"{shaoyang.url}/api/v1/catalog/430400-XK-9999")
    assert status == 404 and body["error"] == "item_not_found"


async def test_admin_refreshes_partner_catalogues_on_demand(
    monkeypatch: pytest.MonkeyPatch, pair: list[RunningNode]
) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES / "430400.toml")
    await add_user(monkeypatch, shaoyang, "admin", "admin")
    await add_user(monkeypatch, shaoyang, "clerk", "clerk")
    url = f"{shaoyang.url}/api/v1/catalog/refresh"
    async with aiohttp.ClientSession() as session:
        async with session.post(url) as resp:
            assert resp.status == 401
        async with session.post(url, headers=await login(shaoyang, "clerk")) as resp:
            assert resp.status == 403
        async with session.post(url, headers=await login(shaoyang, "admin")) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["partners"] == [{"region": "430400", "name": "衡阳市", "ok": True, "error": None}]
    assert len(await partner_items(shaoyang.db)) == 3


# -- the command line ----------------------------------------------------------------------


async def test_cli_loads_lists_and_refuses_a_bad_file(
    capsys: pytest.CaptureFixture[str], pair: list[RunningNode], tmp_path: Path
) -> None:
    hengyang = pair[1]
    directory = str(hengyang.config.dir)
    sample = str(SAMPLES / "430400.toml")
    assert await asyncio.to_thread(main, ["catalog", "load", sample, "--dir", directory]) == 0
    out = capsys.readouterr().out
    assert "loaded 3 items" in out and "430400-XK-0002" in out

    assert await asyncio.to_thread(main, ["catalog", "list", "--dir", directory]) == 0
    out = capsys.readouterr().out
    assert "430400-XK-0002  公共场所卫生许可（新办）  衡阳市  5/20 工作日" in out
    assert "勘验" in out

    bad = tmp_path / "bad.toml"
    text = (SAMPLES / "430400.toml").read_text(encoding="utf-8")
    bad.write_text(text.replace("copies = 2", 'copies = "两份"'), encoding="utf-8")
    assert await asyncio.to_thread(main, ["catalog", "load", str(bad), "--dir", directory]) == 1
    err = capsys.readouterr().err
    assert "430400-DJ-0001" in err and "materials[1].copies" in err and "应为整数" in err
    assert "nothing changed" in err

    other = str(SAMPLES / "430523.toml")
    assert await asyncio.to_thread(main, ["catalog", "load", other, "--dir", directory]) == 1
    assert "430523" in capsys.readouterr().err

    shorter = tmp_path / "shorter.toml"
    shorter.write_text(
        text[: text.index('code = "430400-DJ-0001"')].rsplit("[[items]]", 1)[0], encoding="utf-8"
    )
    assert await asyncio.to_thread(main, ["catalog", "load", str(shorter), "--dir", directory]) == 0
    assert "停用 retired: 430400-DJ-0001" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["catalog", "list", "--dir", directory, "--all"]) == 0
    assert "[已停用 retired]" in capsys.readouterr().out

    # The running node serves what the command loaded.
    await hengyang.start()
    status, _type, body = await fetch(f"{hengyang.url}/federation/v1/catalog")
    claims = json.loads(b64url_decode(body.decode().split(".")[1]))
    assert status == 200 and [i["code"] for i in claims["items"]] == [
        "430400-XK-0001",
        "430400-XK-0002",
    ]
