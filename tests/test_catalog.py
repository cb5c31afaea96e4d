"""The service catalogue without running nodes: the item schema, the signed catalogue, and
loading catalogue files into a database (all or nothing, retiring what a file drops)."""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event

from node.catalog import items as catalog_items
from node.catalog.items import get_item, our_items
from node.catalog.loading import (
    SAMPLES_DIR,
    CatalogError,
    load_catalog_file,
    load_catalog_report,
    parse_catalog,
)
from node.catalog.partner_cache import store_partner_catalog
from node.catalog.publishing import TOKEN_REUSE, our_catalog_token
from node.storage.database import Database
from node.storage.migrate import upgrade
from protocol import jws
from protocol.catalog import (
    TYP,
    Item,
    check_item,
    sign_catalog,
    verify_catalog,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import KeySet, TrustedKey, b64url_decode, b64url_encode, key_id, utc
from protocol.keys import generate_private_key as new_key
from protocol.strictjson import dumps, loads_object
from tests.support.databases import DatabaseFactory

SAMPLES = SAMPLES_DIR
NOW = 1_795_000_000.0


def sample(region: str) -> list[Item]:
    return parse_catalog(region, (SAMPLES / f"{region}.toml").read_text(encoding="utf-8"))


def sample_dict(code: str = "430400-XK-0002") -> dict[str, Any]:
    region = code[:6]
    return next(i for i in sample(region) if i.code == code).to_dict()


@pytest.fixture
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await databases.new_url("catalog"))
    await upgrade(database)
    yield database
    await database.dispose()


# -- samples -------------------------------------------------------------------------------


def test_samples_hold_the_items_of_real_practice() -> None:
    by_code = {i.code: i for r in ("430400", "430523", "370500") for i in sample(r)}
    assert {c: i.name for c, i in by_code.items()} == {
        "430400-XK-0001": "建筑工程施工许可（分阶段办理）",
        "430400-XK-0002": "公共场所卫生许可（新办）",
        "430400-DJ-0001": "不动产登记（转移登记）",
        "430523-XK-0001": "农作物种子生产经营许可证变更",
        "430523-XK-0002": "食品经营许可（新办）",
        "370500-DJ-0001": "企业开办（设立登记）",
        "370500-XK-0001": "道路运输经营许可（道路普通货物运输）",
    }
    assert not by_code["430400-XK-0001"].inspection.required
    assert by_code["430400-XK-0002"].inspection.required
    seed = by_code["430523-XK-0001"]
    assert seed.inspection.required
    for place in ("生产场地", "仓储设施", "检验室"):
        assert any(point.startswith(place) for point in seed.inspection.points)
    for item in by_code.values():
        assert "proxy" in item.modes
        assert item.promised_limit_days <= item.legal_limit_days
        assert item.form_fields and item.legal_basis
        assert item.code.startswith(item.handling_region + "-")
    assert "joint" in by_code["370500-DJ-0001"].modes
    assert any(m.deferrable for i in by_code.values() for m in i.materials)
    assert any(m.pledgeable for i in by_code.values() for m in i.materials)


def test_defaults_are_filled_in_and_the_wire_form_is_explicit() -> None:
    item = next(i for i in sample("430400") if i.code == "430400-XK-0002")
    wire = item.to_dict()
    assert wire["warning_days"] == 3
    assert wire["supplement_deadline_days"] == 5
    assert wire["handling_region"] == "430400"
    application_form = wire["materials"][0]
    assert application_form == {
        "code": "M01",
        "name": "公共场所卫生许可申请表",
        "required": True,
        "deferrable": False,
        "pledgeable": False,
        "copies": 1,
        "form": "form",
        "media_types": ["application/pdf", "image/jpeg", "image/png"],
        "max_bytes": 20 * 1024 * 1024,
    }
    check_item(wire)
    assert Item.from_dict(wire) == item


# -- the item schema -----------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(item: dict[str, Any]) -> None:
        *parents, last = re.findall(r"[^.\[\]]+", path)
        target: Any = item
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (_set("code", "430400-xk-1"), "item.code"),
        (_set("code", "430523-XK-0002"), "item.code"),
        (_set("colour", "red"), "item.colour"),
        (_set("name", _DELETE), "item.name"),
        (_set("name", " 公共场所卫生许可"), "item.name"),
        (_set("modes", ["proxy", "proxy"]), "item.modes[1]"),
        (_set("modes", ["window"]), "item.modes[0]"),
        (_set("modes", []), "item.modes"),
        (_set("promised_limit_days", 21), "item.promised_limit_days"),
        (_set("legal_limit_days", 0), "item.legal_limit_days"),
        (_set("warning_days", True), "item.warning_days"),
        (_set("materials.1.copies", "2"), "item.materials[1].copies"),
        (_set("materials.1.code", "M01"), "item.materials[1]"),
        (_set("materials.1.form", "photocopy"), "item.materials[1].form"),
        (_set("materials.1.media_types", ["PDF"]), "item.materials[1].media_types[0]"),
        (_set("materials.6.deferrable", True), "item.materials[6].deferrable"),
        (_set("inspection.points", []), "item.inspection.points"),
        (_set("inspection", {"required": False, "points": ["后厨"]}), "item.inspection.points"),
        (_set("form_fields.2.options", _DELETE), "item.form_fields[2].options"),
        (_set("form_fields.0.options", ["甲"]), "item.form_fields[0].options"),
        (_set("form_fields.1.name", "business_name"), "item.form_fields[1]"),
        (_set("form_fields.0.type", "email"), "item.form_fields[0].type"),
        (
            _set("fee", {"charged": False, "description": "不收费", "amount_fen": 100}),
            "item.fee.amount_fen",
        ),
        (_set("delivery", ["courier"]), "item.delivery[0]"),
        (_set("legal_basis", []), "item.legal_basis"),
        (_set("result_type", "permit"), "item.result_type"),
    ],
)
def test_item_schema_refuses_with_the_path_of_the_fault(
    change: Callable[[dict[str, Any]], None], path: str
) -> None:
    item = sample_dict()
    check_item(item)
    bad = copy.deepcopy(item)
    change(bad)
    with pytest.raises(ProtocolError) as caught:
        check_item(bad)
    assert caught.value.code == ErrorCode.SCHEMA_INVALID
    assert caught.value.extra["path"] == path, caught.value.detail


# -- the signed catalogue ------------------------------------------------------------------


def _trusted(region: str) -> tuple[Any, str, KeySet]:
    key = new_key()
    kid = key_id(region, key.public_key())
    trusted = TrustedKey(
        kid=kid,
        region=region,
        public_key=key.public_key(),
        not_before=utc(NOW - 3600),
        not_after=utc(NOW + 86400),
    )
    return key, kid, KeySet([trusted])


def _forge(token: str, edit: Callable[[dict[str, Any]], None]) -> str:
    header, payload, signature = token.split(".")
    claims = loads_object(b64url_decode(payload))
    edit(claims)
    return ".".join((header, b64url_encode(dumps(claims)), signature))


def test_catalogue_round_trip() -> None:
    key, kid, keys = _trusted("430400")
    items = sample("430400")
    token = sign_catalog("430400", items, NOW, key, kid)
    assert jws.parse(token, typ=TYP, max_size=10**7).header == {
        "alg": "EdDSA",
        "typ": "tongban-catalog+jwt",
        "kid": kid,
    }
    catalog = verify_catalog(token, keys, "430400", NOW + 60)
    assert catalog.region == "430400"
    assert catalog.iat == int(NOW)
    assert catalog.signed_by == kid
    assert list(catalog.items) == items


def test_sign_refuses_items_of_another_region() -> None:
    key, kid, _keys = _trusted("430400")
    with pytest.raises(ProtocolError) as caught:
        sign_catalog("430400", sample("430523"), NOW, key, kid)
    assert caught.value.extra["path"] == "items[0].handling_region"


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda c: c["items"][0].update(name="伪造的事项"), ErrorCode.BAD_SIGNATURE),
        (lambda c: c.update(region="430523"), ErrorCode.INVALID_CLAIMS),
        (lambda c: c.update(extra=1), ErrorCode.INVALID_CLAIMS),
        (lambda c: c.pop("iat"), ErrorCode.INVALID_CLAIMS),
    ],
)
def test_tampered_catalogue_is_refused(edit: Callable[[dict[str, Any]], None], code: str) -> None:
    key, kid, keys = _trusted("430400")
    token = _forge(sign_catalog("430400", sample("430400"), NOW, key, kid), edit)
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(token, keys, "430400", NOW)
    assert caught.value.code == code


def _signed(key: Any, kid: str, claims: dict[str, Any]) -> str:
    return jws.sign(claims, key, kid=kid, typ=TYP)


def test_catalogue_claims_and_items_are_checked_after_the_signature() -> None:
    key, kid, keys = _trusted("430400")
    items = [i.to_dict() for i in sample("430400")]
    future = _signed(key, kid, {"region": "430400", "iat": int(NOW) + 3600, "items": items})
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(future, keys, "430400", NOW)
    assert caught.value.code == ErrorCode.NOT_YET_VALID
    twice = _signed(key, kid, {"region": "430400", "iat": int(NOW), "items": items + items[:1]})
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(twice, keys, "430400", NOW)
    assert caught.value.code == ErrorCode.SCHEMA_INVALID
    assert caught.value.extra["path"] == "items[3]"
    items[1]["materials"][0]["copies"] = 0
    bad = _signed(key, kid, {"region": "430400", "iat": int(NOW), "items": items})
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(bad, keys, "430400", NOW)
    assert caught.value.extra["path"] == "items[1].materials[0].copies"


def test_catalogue_of_an_untrusted_key_or_type_is_refused() -> None:
    key, kid, keys = _trusted("430400")
    token = sign_catalog("430400", sample("430400"), NOW, key, kid)
    other_key, other_kid, _ = _trusted("430400")
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(sign_catalog("430400", [], NOW, other_key, other_kid), keys, "430400", NOW)
    assert caught.value.code == ErrorCode.UNKNOWN_KID
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(token, keys, "430523", NOW)
    assert caught.value.code in (ErrorCode.INVALID_CLAIMS, ErrorCode.UNKNOWN_ISSUER)
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(token, keys, "430400", NOW + 10 * 86400)
    assert caught.value.code == ErrorCode.KEY_NOT_VALID
    envelope_typ = jws.sign({"region": "430400"}, key, kid=kid, typ="tongban-envelope+jwt")
    with pytest.raises(ProtocolError) as caught:
        verify_catalog(envelope_typ, keys, "430400", NOW)
    assert caught.value.code == ErrorCode.WRONG_TYPE


# -- loading files -------------------------------------------------------------------------


async def test_load_a_sample_file(db: Database) -> None:
    codes = await load_catalog_file(db, "430400", SAMPLES / "430400.toml")
    assert codes == ["430400-XK-0001", "430400-XK-0002", "430400-DJ-0001"]
    assert [i.code for i in await our_items(db)] == sorted(codes)
    item = await get_item(db, "430400-XK-0002")
    assert item is not None and not item.retired
    assert item.handling_region == "430400"
    assert item.inspection.required and item.inspection.points
    assert item.material("M04") is not None and item.material("M04").deferrable  # type: ignore[union-attr]
    assert await get_item(db, "430400-XK-9999") is None
    assert await get_item(db, "not a code") is None
    # Loading the same file again changes nothing.
    report = await load_catalog_report(db, "430400", SAMPLES / "430400.toml")
    assert report.unchanged == codes and not (report.added or report.changed or report.retired)


async def test_reload_retires_missing_items_and_restores_them(db: Database, tmp_path: Path) -> None:
    await load_catalog_file(db, "430400", SAMPLES / "430400.toml")
    text = (SAMPLES / "430400.toml").read_text(encoding="utf-8")
    # Drop the third item (不动产登记) and shorten the promise of the second.
    shorter = text[: text.index('code = "430400-DJ-0001"')].rsplit("[[items]]", 1)[0]
    shorter = shorter.replace("promised_limit_days = 5", "promised_limit_days = 4")
    path = tmp_path / "catalog.toml"
    path.write_text(shorter, encoding="utf-8")
    report = await load_catalog_report(db, "430400", path)
    assert report.retired == ["430400-DJ-0001"]
    assert report.changed == ["430400-XK-0002"]
    assert report.unchanged == ["430400-XK-0001"]
    assert [i.code for i in await our_items(db)] == ["430400-XK-0001", "430400-XK-0002"]
    retired = await get_item(db, "430400-DJ-0001")
    assert retired is not None and retired.retired and retired.name == "不动产登记（转移登记）"
    assert [i.code for i in await our_items(db, include_retired=True) if i.retired] == [
        "430400-DJ-0001"
    ]
    changed = await get_item(db, "430400-XK-0002")
    assert changed is not None and changed.promised_limit_days == 4
    report = await load_catalog_report(db, "430400", SAMPLES / "430400.toml")
    assert report.restored == ["430400-DJ-0001"] and not report.retired
    restored = await get_item(db, "430400-DJ-0001")
    assert restored is not None and not restored.retired


BAD_FILES: list[tuple[str, str, str, str | None, str | None]] = [
    # (description, text to replace, replacement, item named, field named)
    ("copies as text", "copies = 2", 'copies = "2"', "430400-DJ-0001", "materials[1].copies"),
    (
        "promise over the law",
        "promised_limit_days = 5",
        "promised_limit_days = 25",
        "430400-XK-0002",
        "promised_limit_days",
    ),
    (
        "unknown field",
        'department = "衡阳市不动产登记中心"',
        'departmnet = "衡阳市不动产登记中心"',
        "430400-DJ-0001",
        "departmnet",
    ),
    (
        "bad mode",
        'modes = ["proxy", "joint"]',
        'modes = ["proxy", "jiont"]',
        "430400-DJ-0001",
        "modes[1]",
    ),
    (
        "inspection field typo",
        "required = true\npoints = [",
        "required = true\nxpoints = [",
        "430400-XK-0002",
        "inspection.xpoints",
    ),
    (
        "code of another region",
        'code = "430400-XK-0002"',
        'code = "430523-XK-0002"',
        "430523-XK-0002",
        "code",
    ),
    (
        "duplicate code",
        'code = "430400-DJ-0001"',
        'code = "430400-XK-0001"',
        "430400-XK-0001",
        "code",
    ),
    ("bad code", 'code = "430400-DJ-0001"', 'code = "DJ-0001"', "DJ-0001", "code"),
    (
        "select without options",
        'options = ["买卖", "赠与", "继承", "互换", "分割、合并", "其他"]',
        "",
        "430400-DJ-0001",
        "form_fields[2].options",
    ),
    (
        "deferrable optional material",
        'required = false\nnote = "使用集中空调',
        'required = false\ndeferrable = true\nnote = "使用集中空调',
        "430400-XK-0002",
        "materials[6].deferrable",
    ),
    ("another region's file", 'region = "430400"', 'region = "430523"', None, "region"),
    ("TOML syntax", 'name = "衡阳市"', 'name = "衡阳市', None, None),
    ("top-level typo", 'name = "衡阳市"', 'name = "衡阳市"\nregoin = "430400"', None, "regoin"),
]


@pytest.mark.parametrize(
    ("old", "new", "item", "field"),
    [b[1:] for b in BAD_FILES],
    ids=[b[0] for b in BAD_FILES],
)
async def test_bad_file_is_refused_naming_item_and_field_and_nothing_changes(
    db: Database, tmp_path: Path, old: str, new: str, item: str | None, field: str | None
) -> None:
    await load_catalog_file(db, "430400", SAMPLES / "430400.toml")
    before = [i.to_dict() for i in await our_items(db, include_retired=True)]
    text = (SAMPLES / "430400.toml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "430400.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        await load_catalog_file(db, "430400", path)
    error = caught.value
    assert error.message.startswith("430400.toml：")
    assert error.item == item
    assert error.field == field
    if item is not None:
        assert item in error.message
    if field is not None:
        assert field in error.message
    assert [i.to_dict() for i in await our_items(db, include_retired=True)] == before


async def test_error_message_is_chinese_with_the_rule_in_english(tmp_path: Path) -> None:
    text = (SAMPLES / "430400.toml").read_text(encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        parse_catalog("430400", text.replace("copies = 2", "copies = 0"), "430400.toml")
    assert caught.value.message == (
        "430400.toml：第 3 个事项 430400-DJ-0001「不动产登记（转移登记）」 字段 "
        "materials[1].copies：不能小于 1（must be >= 1）"
    )
    with pytest.raises(CatalogError) as caught:
        parse_catalog("430400", text.replace('code = "M02"', 'code = "M 02"', 1), "430400.toml")
    assert "格式不正确（事项编码如 430400-XK-0001；材料编码如 M01）" in caught.value.message


async def test_empty_or_missing_file_is_refused(db: Database, tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text('region = "430400"\n', encoding="utf-8")
    with pytest.raises(CatalogError, match="没有事项"):
        await load_catalog_file(db, "430400", empty)
    with pytest.raises(CatalogError, match="文件不存在"):
        await load_catalog_file(db, "430400", tmp_path / "missing.toml")
    assert await our_items(db) == []


async def test_published_token_is_reused_until_the_catalogue_changes(
    db: Database, tmp_path: Path
) -> None:
    key, kid, keys = _trusted("430400")
    identity = SimpleNamespace(region="430400", kid=kid, private_key=key)
    await load_catalog_file(db, "430400", SAMPLES / "430400.toml")
    first = await our_catalog_token(db, identity, NOW)  # type: ignore[arg-type]
    assert await our_catalog_token(db, identity, NOW + 10) == first  # type: ignore[arg-type]
    text = (SAMPLES / "430400.toml").read_text(encoding="utf-8")
    path = tmp_path / "430400.toml"
    path.write_text(text.replace("promised_limit_days = 5", "promised_limit_days = 4"), "utf-8")
    await load_catalog_file(db, "430400", path)
    changed = await our_catalog_token(db, identity, NOW + 20)  # type: ignore[arg-type]
    catalog = verify_catalog(changed, keys, "430400", NOW + 20)
    assert catalog.iat == int(NOW + 20)
    assert {i.code: i.promised_limit_days for i in catalog.items}["430400-XK-0002"] == 4
    later = await our_catalog_token(db, identity, NOW + 20 + TOKEN_REUSE + 1)  # type: ignore[arg-type]
    assert verify_catalog(later, keys, "430400", NOW + 400).iat > catalog.iat


async def test_a_made_up_item_code_reads_no_partner_catalogue(db: Database) -> None:
    """get_item backs the public /api/v1/catalog/{code}: a code that is not one must not make
    the node read (and parse) partners' cached catalogues, and a code reads its region's row
    only."""
    await load_catalog_file(db, "430400", SAMPLES / "430400.toml")
    statements: list[str] = []
    engine = db._reader if db.is_sqlite else db.engine

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        for code in ("not a code", "%", "430400-XK-0001' OR 1=1 --", "4304000-XK-0001"):
            assert await get_item(db, code) is None
        assert not [s for s in statements if "partner_catalogs" in s]
        assert await get_item(db, "370500-DJ-0001") is None  # no such partner row
        reads = [s for s in statements if "partner_catalogs" in s]
        assert len(reads) == 1 and "WHERE partner_catalogs.region =" in reads[0]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)


async def test_a_partners_item_is_parsed_once_per_version_of_its_catalogue(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The public /api/v1/catalog/{code} may be asked for a partner's items again and again:
    the partner's cached catalogue is parsed once per version, and a newly stored version is
    seen at the next request."""
    key, kid, keys = _trusted("430523")
    items = sample("430523")
    token = sign_catalog("430523", items, NOW, key, kid)
    await store_partner_catalog(db, token.encode(), verify_catalog(token, keys, "430523", NOW), NOW)
    parsed: list[int] = []
    real = catalog_items._entries_by_code

    def counting(text: str) -> dict[str, Any]:
        parsed.append(len(text))
        return real(text)

    monkeypatch.setattr(catalog_items, "_entries_by_code", counting)
    first, second = items[0], items[-1]
    for _ in range(3):
        found = await get_item(db, first.code)
        assert found is not None and found.to_dict() == first.to_dict()
        assert (await get_item(db, second.code)) == second
        assert await get_item(db, "430523-XX-9999") is None
    assert len(parsed) == 1
    # The partner publishes a change: stored anew, seen at once, parsed once more.
    changed = [
        Item.from_dict({**first.to_dict(), "name": first.name + "（新）"}),
        *items[1:],
    ]
    token = sign_catalog("430523", changed, NOW + 60, key, kid)
    await store_partner_catalog(
        db, token.encode(), verify_catalog(token, keys, "430523", NOW + 60), NOW + 60
    )
    for _ in range(2):
        found = await get_item(db, first.code)
        assert found is not None and found.name == first.name + "（新）"
    assert len(parsed) == 2
