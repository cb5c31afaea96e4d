"""Loading our own catalogue from a TOML file (format: docs/catalog.md).

:func:`parse_catalog` checks every item of the file strictly and names the first fault (item
and field) in Chinese for admins; :func:`load_catalog_file` replaces our catalogue in one
transaction. Items the file no longer lists are retired, never deleted, so cases opened under
them still resolve their item.
"""

from __future__ import annotations

import json
import logging
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from node.catalog.index import index_region
from node.catalog.models import items as items_table
from node.storage.database import Database
from protocol.catalog import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MEDIA_TYPES,
    DEFAULT_SUPPLEMENT_DEADLINE_DAYS,
    DEFAULT_WARNING_DAYS,
    MAX_ITEMS,
    Item,
    check_item,
)
from protocol.errors import ProtocolError
from protocol.keys import REGION_RE

log = logging.getLogger(__name__)

#: Sample catalogues of the demo regions: ``SAMPLES_DIR / f"{region}.toml"``.
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


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
            data = json.dumps(item.to_dict(), ensure_ascii=False, separators=(",", ":"))
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
