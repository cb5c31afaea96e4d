"""The service catalogue: load ours from a TOML file, publish it signed, keep partners' current.

- :func:`load_catalog_file` reads ``catalog.toml`` (format: docs/catalog.md), checks every item
  strictly and replaces our catalogue in one transaction; items the file no longer lists are
  retired, never deleted, so cases opened under them still resolve their item.
- :func:`our_catalog_token` signs our current items for ``GET /federation/v1/catalog``.
- :func:`refresh_partner_catalog` fetches, verifies and caches one partner's catalogue;
  :class:`CatalogRefresher` does so for every partner every 30 minutes and on demand.
- :func:`get_item` resolves an item code to our item or a partner's cached one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from node.appkeys import CATALOG_REFRESHER, DATABASE, FEDERATION
from node.catalog.index import ensure_index, index_region
from node.catalog.models import items as items_table
from node.catalog.models import partner_catalogs
from node.catalog.schedule import DEFAULT_JITTER, DEFAULT_START_RATE, RefreshSchedule
from node.federation.client import PartnerClient, TransportError
from node.federation.identity import NodeIdentity
from node.federation.trust import TrustStore
from node.storage.database import Database
from node.waiting import wait_event
from protocol.catalog import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MEDIA_TYPES,
    DEFAULT_SUPPLEMENT_DEADLINE_DAYS,
    DEFAULT_WARNING_DAYS,
    ITEM_CODE_RE,
    MAX_ITEMS,
    Catalog,
    Item,
    check_item,
    sign_catalog,
    verify_catalog,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import REGION_RE

log = logging.getLogger(__name__)

#: Sample catalogues of the demo regions: ``SAMPLES_DIR / f"{region}.toml"``.
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
#: How often every partner's catalogue is fetched, seconds.
REFRESH_INTERVAL = 30 * 60.0
#: First retry after a failed fetch, seconds; doubles per failure up to REFRESH_INTERVAL.
RETRY_INTERVAL = 30.0
#: How often the refresher looks for partners added to partners.toml, seconds.
PARTNER_CHECK_INTERVAL = 5.0
#: Partner catalogues fetched at once, at most.
REFRESH_CONCURRENCY = 8

# -- labels for people -----------------------------------------------------------------------

MODE_LABELS: dict[str, str] = {
    "proxy": "异地代收代办",
    "online": "全程网办",
    "joint": "多地联办",
}
FORM_LABELS: dict[str, str] = {
    "original": "原件",
    "copy": "复印件",
    "scan": "电子扫描件",
    "form": "申请表（现场填写或下载）",
}
RESULT_LABELS: dict[str, str] = {
    "license": "许可证",
    "certificate": "证书（证明）",
    "approval_letter": "批准文件",
    "registration": "登记（执照）",
    "filing": "备案",
    "other": "其他",
}
DELIVERY_LABELS: dict[str, str] = {"window": "窗口领取", "mail": "邮寄送达"}
FIELD_TYPE_LABELS: dict[str, str] = {
    "text": "文本",
    "number": "数字",
    "date": "日期",
    "select": "选择",
}


# -- loading our catalogue -------------------------------------------------------------------


class CatalogError(Exception):
    """A catalogue file refused. ``message`` is for people and names the item and the field;
    ``item`` is the item's code (or ``第N项`` when it has none), ``field`` the path inside it."""

    def __init__(self, message: str, *, item: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.item = item
        self.field = field


@dataclass(frozen=True)
class LoadReport:
    """What a load changed. ``loaded`` lists every item of the file, in file order."""

    loaded: list[str]
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Listed again after having been retired.
    restored: list[str] = field(default_factory=list)
    #: Retired by this load (no longer in the file).
    retired: list[str] = field(default_factory=list)


#: Schema messages (protocol.schema and protocol.catalog rules) in Chinese, for admins.
_ZH: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), zh)
    for p, zh in (
        (r"must be a string", "应为文本"),
        (r"length must be (\d+)\.\.(\d+)", r"长度应为 \1 至 \2 个字符"),
        (r"must be one of (.*)", r"应为以下之一：\1"),
        (r"has the wrong format", "格式不正确"),
        (r"must be an integer", "应为整数"),
        (r"must be >= (\S+)", r"不能小于 \1"),
        (r"must be <= (\S+)", r"不能大于 \1"),
        (r"must be true or false", "应为 true 或 false"),
        (r"must be a list", "应为数组"),
        (r"must have (\d+)\.\.(\d+) items", r"应有 \1 至 \2 项"),
        (r"must be an object", "应为表"),
        (r"unknown field", "是未知字段（请检查拼写）"),
        (r"is required", "缺失（必填）"),
        (r"must be one line of text.*", "应为单行文本，不能含控制字符或首尾空格"),
        (r"must be text that is not blank.*", "不能为空，不能含控制字符"),
        (r"material code (.*) is listed twice", r"材料编码 \1 重复"),
        (r"field name (.*) is listed twice", r"字段名 \1 重复"),
        (r"item code (.*) is listed twice", r"事项编码 \1 重复"),
        (r"value (.*) is listed twice", r"取值 \1 重复"),
        (r"only a required material.*", "只有必需材料（required = true）才能容缺或告知承诺"),
        (r"a required inspection lists.*", "需要勘验的事项至少列出一个勘验要点"),
        (r"only a required inspection lists.*", "不需要勘验的事项不应列出勘验要点"),
        (r"only for a charged item", "只有收费事项可填写金额"),
        (r"a select field lists its options", "选择类字段须列出选项 options"),
        (r"only a select field has options", "只有选择类（select）字段可有选项"),
        (r"must start with the handling_region.*", "应以办理地行政区划代码开头"),
        (r"must not exceed legal_limit_days", "承诺时限不能超过法定时限 legal_limit_days"),
        (r"must be the catalogue's region.*", "应为本目录的行政区划代码"),
    )
]

#: Format hints for fields whose format is easy to get wrong, by the last part of the path.
_HINTS: dict[str, str] = {
    "code": "（事项编码如 430400-XK-0001；材料编码如 M01）",
    "name": "（表单字段名为小写英文与下划线，如 project_name）",
    "media_types": "（如 application/pdf、image/jpeg）",
}


def _zh(message: str) -> str:
    for pattern, replacement in _ZH:
        if pattern.fullmatch(message):
            return pattern.sub(replacement, message)
    return message


def _describe(exc: ProtocolError, base: str) -> tuple[str, str]:
    """(field path relative to ``base``, Chinese message) of a schema refusal."""
    path = str(exc.extra.get("path", ""))
    english = exc.detail.split(": ", 1)[1] if ": " in exc.detail else exc.detail
    relative = path[len(base) + 1 :] if path.startswith(base + ".") else path
    text = _zh(english)
    if text == "格式不正确":
        last = re.sub(r"\[\d+\]$", "", relative.rsplit(".", 1)[-1])
        text += _HINTS.get(last, "")
    return relative, f"{text}（{english}）"


def _fill_defaults(raw: Any, region: str) -> Any:
    """The item of a TOML table with the documented defaults filled in (a copy)."""
    if not isinstance(raw, dict):
        return raw
    item = dict(raw)
    item.setdefault("handling_region", region)
    item.setdefault("warning_days", DEFAULT_WARNING_DAYS)
    item.setdefault("supplement_deadline_days", DEFAULT_SUPPLEMENT_DEADLINE_DAYS)
    item.setdefault("delivery", ["window", "mail"])
    item.setdefault("fee", {"charged": False, "description": "不收费"})
    item.setdefault("form_fields", [])
    inspection = item.setdefault("inspection", {"required": False})
    if isinstance(inspection, dict):
        item["inspection"] = {"points": [], **inspection}
    materials = item.get("materials")
    if isinstance(materials, list):
        item["materials"] = [
            {
                "required": True,
                "deferrable": False,
                "pledgeable": False,
                "copies": 1,
                "form": "original",
                "media_types": list(DEFAULT_MEDIA_TYPES),
                "max_bytes": DEFAULT_MAX_BYTES,
                **m,
            }
            if isinstance(m, dict)
            else m
            for m in materials
        ]
    fields = item.get("form_fields")
    if isinstance(fields, list):
        item["form_fields"] = [
            {"required": True, **f} if isinstance(f, dict) else f for f in fields
        ]
    return item


def parse_catalog(region: str, text: str, source: str = "catalog.toml") -> list[Item]:
    """The items of a catalogue file's text, checked strictly; CatalogError names the first
    fault (item and field)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}：TOML 格式错误：{exc}") from exc
    unknown = sorted(set(data) - {"region", "name", "items"})
    if unknown:
        raise CatalogError(
            f"{source}：未知的顶层字段 {', '.join(unknown)}（只允许 region、name、items）",
            field=unknown[0],
        )
    file_region = data.get("region")
    if not isinstance(file_region, str) or not REGION_RE.match(file_region):
        raise CatalogError(
            f"{source}：字段 region：缺失或不是 6 位行政区划代码（文本）", field="region"
        )
    if file_region != region:
        raise CatalogError(
            f"{source}：字段 region：这是 {file_region} 的事项目录，本节点是 {region}，不能加载",
            field="region",
        )
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise CatalogError(f"{source}：没有事项（至少一个 [[items]]）", field="items")
    if len(raw_items) > MAX_ITEMS:
        raise CatalogError(f"{source}：事项过多（至多 {MAX_ITEMS} 个）", field="items")
    parsed: list[Item] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_items):
        number = index + 1
        code = raw.get("code") if isinstance(raw, dict) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"第 {number} 个事项"
        if isinstance(code, str):
            label += f" {code}"
        if isinstance(name, str):
            label += f"「{name}」"
        who = code if isinstance(code, str) else f"第{number}项"
        if isinstance(raw, dict) and raw.get("handling_region", region) != region:
            raise CatalogError(
                f"{source}：{label} 字段 handling_region：办理地应为本节点 {region}（可省略）",
                item=who,
                field="handling_region",
            )
        value = _fill_defaults(raw, region)
        base = f"items[{index}]"
        try:
            check_item(value, base)
        except ProtocolError as exc:
            relative, message = _describe(exc, base)
            raise CatalogError(
                f"{source}：{label} 字段 {relative or '(整个事项)'}：{message}",
                item=who,
                field=relative or None,
            ) from exc
        if value["code"] in seen:
            raise CatalogError(
                f"{source}：{label} 字段 code：事项编码与第 {seen[value['code']]} 个事项重复",
                item=who,
                field="code",
            )
        seen[value["code"]] = number
        parsed.append(Item.from_dict(value))
    return parsed


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def load_catalog(
    db: Database,
    region: str,
    items: list[Item],
    *,
    now: float | None = None,
    region_name: str | None = None,
) -> LoadReport:
    """Make ``items`` our catalogue in one transaction; retire our items not among them. The
    search index (node/catalog/index.py) changes in the same transaction; ``region_name`` is
    our name for people there (None keeps the one it has)."""
    moment = time.time() if now is None else now
    report = LoadReport(loaded=[i.code for i in items])
    async with db.write() as conn:
        rows = (
            await conn.execute(
                select(items_table.c.code, items_table.c.data, items_table.c.retired).where(
                    items_table.c.handling_region == region
                )
            )
        ).all()
        existing = {r.code: r for r in rows}
        for item in items:
            data = _dumps(item.to_dict())
            row = existing.get(item.code)
            if row is None:
                await conn.execute(
                    items_table.insert().values(
                        code=item.code,
                        name=item.name,
                        handling_region=region,
                        data=data,
                        retired=False,
                        retired_at=None,
                        updated_at=moment,
                    )
                )
                report.added.append(item.code)
                continue
            if row.data == data and not row.retired:
                report.unchanged.append(item.code)
                continue
            (report.restored if row.retired else report.changed).append(item.code)
            await conn.execute(
                update(items_table)
                .where(items_table.c.code == item.code)
                .values(
                    name=item.name, data=data, retired=False, retired_at=None, updated_at=moment
                )
            )
        listed = set(report.loaded)
        gone = sorted(c for c, r in existing.items() if c not in listed and not r.retired)
        if gone:
            await conn.execute(
                update(items_table)
                .where(items_table.c.code.in_(gone))
                .values(retired=True, retired_at=moment, updated_at=moment)
            )
        report.retired.extend(gone)
        await index_region(conn, region, region_name, items, own=True)
    log.info(
        "catalogue loaded",
        extra={
            "items": len(report.loaded),
            "added": len(report.added),
            "changed": len(report.changed),
            "retired": len(report.retired),
        },
    )
    return report


async def load_catalog_report(
    db: Database,
    region: str,
    path: Path,
    *,
    now: float | None = None,
    region_name: str | None = None,
) -> LoadReport:
    """Read, check and load a catalogue file; CatalogError (nothing changed) if it is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}：文件不存在") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}：不是 UTF-8 编码的文本") from exc
    items = parse_catalog(region, text, source=Path(path).name)
    return await load_catalog(db, region, items, now=now, region_name=region_name)


async def load_catalog_file(
    db: Database, region: str, path: Path | str, *, region_name: str | None = None
) -> list[str]:
    """Load the catalogue file at ``path`` as ``region``'s catalogue (all or nothing) and
    return the codes of its items. Raises CatalogError naming the item and field at fault."""
    return (await load_catalog_report(db, region, Path(path), region_name=region_name)).loaded


# -- reading -------------------------------------------------------------------------------


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


async def get_item(db: Database, code: str) -> Item | None:
    """Our item ``code`` or a partner's cached one, retired ones included (``item.retired``
    tells): old cases must resolve their item; new applications should refuse a retired one.
    ``item.handling_region`` says whose it is."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(items_table.c.data, items_table.c.retired).where(items_table.c.code == code)
            )
        ).first()
        if row is not None:
            return Item.from_dict(json.loads(row.data), retired=bool(row.retired))
        query = select(partner_catalogs.c["items"])
        match = ITEM_CODE_RE.fullmatch(code)
        if match is not None:
            query = query.where(partner_catalogs.c.region == match.group(1))
        rows = (await conn.execute(query)).all()
    for cached in rows:
        for entry in json.loads(cached._mapping["items"]):
            if entry.get("code") == code:
                return _cached_item(entry)
    return None


@dataclass(frozen=True)
class PartnerCatalogStatus:
    """How current our copy of a partner's catalogue is."""

    region: str
    items: int
    issued_at: float | None
    fetched_at: float | None
    attempted_at: float | None
    error: str | None


async def partner_catalog_status(db: Database) -> list[PartnerCatalogStatus]:
    async with db.read() as conn:
        rows = (
            await conn.execute(select(partner_catalogs).order_by(partner_catalogs.c.region))
        ).all()
    return [
        PartnerCatalogStatus(
            region=r.region,
            items=sum(1 for e in json.loads(r._mapping["items"]) if not e.get("retired")),
            issued_at=r.issued_at,
            fetched_at=r.fetched_at,
            attempted_at=r.attempted_at,
            error=r.error,
        )
        for r in rows
    ]


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


# -- publishing ------------------------------------------------------------------------------


#: A signed catalogue is served again for this long while the catalogue is unchanged, seconds
#: (the endpoint is public: it must not sign on every request).
TOKEN_REUSE = 300.0


@dataclass(frozen=True)
class PublishedCatalog:
    """Our signed catalogue and its ETag. The ETag is a digest of the items and the signing
    key id, not of the token: it stays the same while the catalogue does, across re-signing
    (every TOKEN_REUSE seconds) and across replicas."""

    token: str
    etag: str


#: (region, kid) -> (catalogue version, signed at, published).
_published: dict[tuple[str, str], tuple[tuple[int, float | None], float, PublishedCatalog]] = {}


def catalog_etag(items: list[Item], kid: str) -> str:
    """The strong ETag of a catalogue of ``items`` signed with ``kid``."""
    digest = hashlib.sha256(_dumps([kid, [i.to_dict() for i in items]]).encode("utf-8"))
    return f'"{digest.hexdigest()[:40]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, ``*`` matches)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        value = candidate.strip()
        if value == "*" or value.removeprefix("W/") == etag:
            return True
    return False


async def our_catalog(
    db: Database, identity: NodeIdentity, now: float | None = None
) -> PublishedCatalog:
    """Our current (not retired) items as a catalogue JWS signed with the node's active key,
    with its ETag.

    The token is reused for up to TOKEN_REUSE seconds while no item changed (the version is the
    row count and newest ``updated_at``, so a load by another replica is seen at once); a
    changed catalogue is always served with an ``iat`` after the change.
    """
    moment = time.time() if now is None else now
    async with db.read() as conn:
        count, newest = (
            await conn.execute(select(func.count(), func.max(items_table.c.updated_at)))
        ).one()
    version = (int(count), newest)
    key = (identity.region, identity.kid)
    cached = _published.get(key)
    if cached is not None and cached[0] == version and 0 <= moment - cached[1] < TOKEN_REUSE:
        return cached[2]
    current = await our_items(db)
    token = sign_catalog(identity.region, current, moment, identity.private_key, identity.kid)
    published = PublishedCatalog(token=token, etag=catalog_etag(current, identity.kid))
    _published[key] = (version, moment, published)
    return published


async def our_catalog_token(db: Database, identity: NodeIdentity, now: float | None = None) -> str:
    """The token of :func:`our_catalog`."""
    return (await our_catalog(db, identity, now)).token


# -- partners' catalogues --------------------------------------------------------------------


class CatalogRefreshError(Exception):
    """A partner's catalogue could not be fetched or did not verify (recorded in its row)."""

    def __init__(self, region: str, reason: str) -> None:
        super().__init__(f"{region}: {reason}")
        self.region = region
        self.reason = reason


def _upsert(conn: AsyncConnection, values: dict[str, Any]) -> Any:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(partner_catalogs).values(**values)
    return statement.on_conflict_do_update(
        index_elements=[partner_catalogs.c.region],
        set_={k: v for k, v in values.items() if k != "region"},
    )


async def _record_failure(db: Database, region: str, when: float, reason: str) -> None:
    async with db.write() as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(
            insert(partner_catalogs)
            .values(region=region, items="[]", attempted_at=when, error=reason[:1000])
            .on_conflict_do_update(
                index_elements=[partner_catalogs.c.region],
                set_={"attempted_at": when, "error": reason[:1000]},
            )
        )


async def _held_etag(db: Database, region: str) -> str | None:
    """The ETag to send: only while we hold a verified catalogue it describes."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(partner_catalogs.c.etag, partner_catalogs.c.token).where(
                    partner_catalogs.c.region == region
                )
            )
        ).first()
    return row.etag if row is not None and row.token is not None else None


async def _record_unchanged(db: Database, region: str, when: float) -> list[str]:
    """The partner answered 304 Not Modified: our copy is current; note when we checked."""
    async with db.write() as conn:
        await conn.execute(
            update(partner_catalogs)
            .where(partner_catalogs.c.region == region)
            .values(checked_at=when, attempted_at=when, error=None)
        )
        cached = (
            await conn.execute(
                select(partner_catalogs.c["items"]).where(partner_catalogs.c.region == region)
            )
        ).scalar_one()
    return [e["code"] for e in json.loads(cached) if not e.get("retired")]


async def store_partner_catalog(
    db: Database,
    token: bytes,
    catalog: Catalog,
    when: float,
    *,
    region_name: str | None = None,
    etag: str | None = None,
) -> list[str]:
    """Cache a verified partner catalogue and bring the search index in step, in one
    transaction; returns the codes it lists. Items it no longer lists stay cached, retired (and
    leave the index). A catalogue older than the cached one is not stored."""
    current = [i.to_dict() for i in catalog.items]
    codes = [i["code"] for i in current]
    async with db.write() as conn:
        query = select(partner_catalogs).where(partner_catalogs.c.region == catalog.region)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is not None and row.issued_at is not None and catalog.iat < row.issued_at:
            # Another fetch (another replica) stored a newer one meanwhile: keep it.
            await conn.execute(
                update(partner_catalogs)
                .where(partner_catalogs.c.region == catalog.region)
                .values(attempted_at=when, error=None)
            )
            return [e["code"] for e in json.loads(row._mapping["items"]) if not e.get("retired")]
        listed = set(codes)
        previous = json.loads(row._mapping["items"]) if row is not None else []
        kept = [{**e, "retired": True} for e in previous if e.get("code") not in listed]
        await conn.execute(
            _upsert(
                conn,
                {
                    "region": catalog.region,
                    "token": token.decode("ascii"),
                    "items": _dumps(current + kept),
                    "issued_at": float(catalog.iat),
                    "fetched_at": when,
                    "attempted_at": when,
                    "checked_at": when,
                    "etag": etag,
                    "error": None,
                },
            )
        )
        await index_region(conn, catalog.region, region_name, catalog.items, own=False)
    return codes


async def refresh_partner_catalog(
    db: Database,
    trust: TrustStore,
    client: PartnerClient,
    region: str,
    *,
    now: float | None = None,
    learn_keys: Callable[[str], Awaitable[bool]] | None = None,
) -> list[str]:
    """Fetch ``GET {url}/federation/v1/catalog`` of partner ``region``, verify it with the
    partner's keys and cache it; returns the codes it lists.

    The request carries ``If-None-Match`` with the ETag of the catalogue we hold: a 304 keeps
    the cache and records the check (``checked_at``). Items the partner no longer lists stay
    cached, retired. A catalogue older than the cached one is not stored. On any failure the
    reason is recorded in the partner's row (the cached items stay) and CatalogRefreshError is
    raised. ``learn_keys(region)`` (the federation's descriptor refresher) is asked once when
    the signing key is unknown, after a rotation.
    """
    when = time.time() if now is None else now
    partner = trust.partner(region)
    if partner is None:
        raise CatalogRefreshError(region, "not a partner")
    held = await _held_etag(db, region)
    try:
        answer = await client.get_catalog_if_changed(partner.url, held)
        if answer.body is None:
            codes = await _record_unchanged(db, region, when)
            log.info("partner catalogue unchanged", extra={"partner": region})
            return codes
        token = answer.body
        try:
            catalog = verify_catalog(token, trust.keys, region, when)
        except ProtocolError as exc:
            if exc.code != ErrorCode.UNKNOWN_KID or learn_keys is None:
                raise
            if not await learn_keys(region):
                raise
            catalog = verify_catalog(token, trust.keys, region, when)
    except (TransportError, ProtocolError) as exc:
        reason = str(exc)
        await _record_failure(db, region, when, reason)
        raise CatalogRefreshError(region, reason) from exc
    codes = await store_partner_catalog(
        db, token, catalog, when, region_name=partner.name, etag=answer.etag
    )
    log.info("partner catalogue stored", extra={"partner": region, "items": len(codes)})
    return codes


class CatalogRefresher:
    """Keeps every partner's catalogue current, on the plan of :class:`RefreshSchedule`:
    first fetches spread over time (at most ``start_rate`` a second), then every ``interval``
    seconds ± jitter after each partner's last check; a failed fetch is retried after
    ``retry_interval``, doubling up to ``interval``, for that partner alone. At most
    ``concurrency`` fetches run at once, and a slow partner holds only its own slot. Partners
    added to partners.toml are planned within seconds. :meth:`refresh_soon` and
    :meth:`refresh_now` fetch on demand."""

    def __init__(
        self,
        db: Database,
        trust: TrustStore,
        client: PartnerClient,
        *,
        interval: float = REFRESH_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
        learn_keys: Callable[[str], Awaitable[bool]] | None = None,
        concurrency: int = REFRESH_CONCURRENCY,
        jitter: float = DEFAULT_JITTER,
        start_rate: float = DEFAULT_START_RATE,
    ) -> None:
        self._db = db
        self._trust = trust
        self._client = client
        self._learn_keys = learn_keys
        self._schedule = RefreshSchedule(
            interval, retry_interval, jitter=jitter, start_rate=start_rate
        )
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Task[str | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def schedule(self) -> RefreshSchedule:
        return self._schedule

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="catalog-refresher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        tasks = [t for t in [task, *self._running.values()] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    def refresh_soon(self, region: str | None = None) -> None:
        """Fetch ``region``'s catalogue (every partner's if None) at once, in the background."""
        now = time.time()
        for name in [region] if region else list(self._trust.partners):
            if name not in self._running:
                self._schedule.soon(name, now)
        self._wake.set()

    async def refresh_now(self, region: str | None = None) -> dict[str, str | None]:
        """Fetch now and wait (``concurrency`` at a time): partner region → None on success,
        else the reason."""
        regions = [region] if region else sorted(self._trust.partners)
        results = await asyncio.gather(*(self.refresh(r) for r in regions))
        return dict(zip(regions, results, strict=True))

    async def refresh(self, region: str) -> str | None:
        """Fetch one partner's catalogue; None on success, else the reason (also recorded)."""
        lock = self._locks.setdefault(region, asyncio.Lock())
        try:
            async with lock, self._slots:
                self._schedule.started(region)
                try:
                    await refresh_partner_catalog(
                        self._db, self._trust, self._client, region, learn_keys=self._learn_keys
                    )
                except CatalogRefreshError as exc:
                    delay = self._schedule.failed(region, time.time())
                    log.warning(
                        "partner catalogue not refreshed",
                        extra={"partner": region, "why": exc.reason, "retry_in": round(delay)},
                    )
                    return exc.reason
                except Exception as exc:
                    self._schedule.failed(region, time.time())
                    log.exception(
                        "refreshing a partner catalogue failed", extra={"partner": region}
                    )
                    return f"{type(exc).__name__}: {exc}"
                self._schedule.succeeded(region, time.time())
                return None
        finally:
            self._wake.set()

    async def _admit(self, now: float) -> None:
        """Plan partners new to the schedule (from their last check); forget removed ones."""
        partners = set(self._trust.partners)
        for region in self._schedule.regions():
            if region not in partners and region not in self._running:
                self._schedule.forget(region)
        new = sorted(partners.difference(self._schedule.regions()))
        if not new:
            return
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        partner_catalogs.c.region,
                        partner_catalogs.c.checked_at,
                        partner_catalogs.c.fetched_at,
                    ).where(partner_catalogs.c.region.in_(new))
                )
            ).all()
        last = {r.region: max(r.checked_at or 0.0, r.fetched_at or 0.0) or None for r in rows}
        self._schedule.admit(new, now, last)

    def _launch(self, region: str) -> None:
        self._schedule.started(region)
        task = asyncio.create_task(self.refresh(region), name=f"catalog-refresh-{region}")
        self._running[region] = task
        task.add_done_callback(functools.partial(self._finished, region))

    def _finished(self, region: str, _task: asyncio.Task[str | None]) -> None:
        self._running.pop(region, None)

    async def _run(self) -> None:
        while True:
            now = time.time()
            try:
                await self._admit(now)
            except Exception:
                log.exception("planning partner catalogue refreshes failed")
            for region in self._schedule.due(now):
                if len(self._running) >= self._concurrency:
                    break
                if region not in self._running:
                    self._launch(region)
            next_at = self._schedule.next_at()
            wait = PARTNER_CHECK_INTERVAL
            if next_at is not None:
                wait = min(max(0.0, next_at - time.time()), PARTNER_CHECK_INTERVAL)
            if len(self._running) >= self._concurrency:
                wait = PARTNER_CHECK_INTERVAL  # a finished fetch wakes the loop
            await wait_event(self._wake, wait)
            self._wake.clear()


# -- wiring into the app ---------------------------------------------------------------------


async def start_catalog_refresher(app: web.Application) -> CatalogRefresher:
    """Bring the search index up to date with the cached catalogues (node/catalog/index.py
    ``ensure_index``) and start refreshing partners' catalogues. Call after the federation has
    started (it needs the loaded trust store and the started HTTP client)."""
    fed = app[FEDERATION]
    names = {region: partner.name for region, partner in fed.trust.partners.items()}
    names[fed.identity.region] = fed.identity.name
    await ensure_index(app[DATABASE], fed.identity.region, names)
    refresher = CatalogRefresher(
        app[DATABASE], fed.trust, fed.client, learn_keys=fed.refresher.refresh
    )
    app[CATALOG_REFRESHER] = refresher
    refresher.start()
    return refresher


async def stop_catalog_refresher(app: web.Application) -> None:
    """Stop the refresher started by :func:`start_catalog_refresher` (before the federation
    stops)."""
    refresher = app.get(CATALOG_REFRESHER)
    if refresher is not None:
        await refresher.stop()


async def catalog_refresher_ctx(app: web.Application) -> AsyncIterator[None]:
    """For ``app.cleanup_ctx``, appended after the context that starts the federation."""
    await start_catalog_refresher(app)
    try:
        yield
    finally:
        await stop_catalog_refresher(app)
