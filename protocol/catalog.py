"""The service catalogue (事项目录) a region publishes at ``GET /federation/v1/catalog``.

A catalogue is a compact JWS (``typ`` ``tongban-catalog+jwt``) signed by one of the region's
keys, with exactly the claims ``region``, ``iat`` and ``items``. Every item follows
:data:`ITEM_SCHEMA`, strictly: unknown fields, missing fields and wrong types are refused with
``schema_invalid`` and the path of the fault (``items[2].materials[0].copies``). The format of
every field is in docs/catalog.md.

Pure: no I/O, no clock (callers pass ``now``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import claims as c
from protocol import jws
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import KeySet
from protocol.schema import Bool, Checked, Enum, Int, List, Obj, Schema, Str, fail

TYP = "tongban-catalog+jwt"
CLAIMS = frozenset({"region", "iat", "items"})
#: Largest catalogue token, bytes (a few hundred items with their materials fit easily).
MAX_CATALOG_BYTES = 4 * 1024 * 1024
#: Most items one catalogue may list.
MAX_ITEMS = 1000

#: ``<region>-<category>-<serial>``: the handling region's 6-digit code, 2–4 upper-case letters
#: of category (XK 行政许可, QR 行政确认, DJ 登记, GG 公共服务, BA 备案, QT 其他), a 4–6 digit
#: serial. The region part must be the item's ``handling_region``, so codes of two regions never
#: collide. Example: ``430400-XK-0001``.
ITEM_CODE_RE = re.compile(r"([1-9][0-9]{5})-([A-Z]{2,4})-([0-9]{4,6})")
#: Material codes: unique within their item, e.g. ``M01``.
MATERIAL_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
#: Form field names: lower-case snake_case, e.g. ``project_name``.
FIELD_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: A media type, lower case: ``application/pdf``.
MEDIA_TYPE_RE = re.compile(r"[a-z]+/[a-z0-9][a-z0-9.+-]{0,62}")

MODES = ("proxy", "online", "joint")
MATERIAL_FORMS = ("original", "copy", "scan", "form")
RESULT_TYPES = ("license", "certificate", "approval_letter", "registration", "filing", "other")
DELIVERY_METHODS = ("window", "mail")
FIELD_TYPES = ("text", "number", "date", "select")
#: Largest file a material may accept: the node's default largest blob (200 MiB).
MAX_MATERIAL_BYTES = 200 * 1024 * 1024
#: Longest time limit, working days.
MAX_LIMIT_DAYS = 365

# Defaults the TOML loader fills in (the wire always carries every field explicitly).
DEFAULT_WARNING_DAYS = 3
DEFAULT_SUPPLEMENT_DEADLINE_DAYS = 5
DEFAULT_MEDIA_TYPES = ("application/pdf", "image/jpeg", "image/png")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


# -- field types -----------------------------------------------------------------------------


def _is_line(value: str) -> bool:
    return (
        value != ""
        and value.strip() == value
        and not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value)
    )


def _is_text(value: str) -> bool:
    return value.strip() != "" and not any(
        (ord(ch) < 0x20 and ch not in "\n\r\t") or 0x7F <= ord(ch) <= 0x9F for ch in value
    )


def _line(max_len: int) -> Str:
    """One line of text for people: not blank, no control characters, no outer spaces."""
    return Str(
        min_len=1,
        max_len=max_len,
        check_fn=_is_line,
        check_message="must be one line of text without control characters or outer spaces",
    )


def _text(max_len: int) -> Str:
    """Free text for people: not blank; line breaks allowed."""
    return Str(
        min_len=1,
        max_len=max_len,
        check_fn=_is_text,
        check_message="must be text that is not blank and has no control characters",
    )


def _regex(pattern: re.Pattern[str], max_len: int) -> Str:
    return Str(min_len=1, max_len=max_len, pattern=pattern.pattern)


REGION = Str(min_len=6, max_len=6, pattern=r"[1-9][0-9]{5}")
ITEM_CODE = _regex(ITEM_CODE_RE, 18)
MATERIAL_CODE = _regex(MATERIAL_CODE_RE, 32)
FIELD_NAME = _regex(FIELD_NAME_RE, 40)
MEDIA_TYPE = _regex(MEDIA_TYPE_RE, 80)


def _unique(path: str, values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise fail(f"{path}[{index}]", f"{what} {value} is listed twice")
        seen.add(value)


def _unique_list(item: Schema, *, min_items: int, max_items: int) -> Checked:
    """A list of strings, each at most once."""

    def rule(value: list[str], path: str) -> None:
        _unique(path, value, "value")

    return Checked(List(item, min_items=min_items, max_items=max_items), rule)


# -- the item schema -------------------------------------------------------------------------


def _material_rule(value: dict[str, Any], path: str) -> None:
    if not value["required"]:
        for flag in ("deferrable", "pledgeable"):
            if value[flag]:
                raise fail(f"{path}.{flag}", "only a required material can be deferrable/pledged")


MATERIAL = Checked(
    Obj(
        required={
            "code": MATERIAL_CODE,
            "name": _line(200),
            "required": Bool(),
            "deferrable": Bool(),
            "pledgeable": Bool(),
            "copies": Int(1, 20),
            "form": Enum(*MATERIAL_FORMS),
            "media_types": _unique_list(MEDIA_TYPE, min_items=1, max_items=10),
            "max_bytes": Int(1, MAX_MATERIAL_BYTES),
        },
        optional={"note": _text(500)},
    ),
    _material_rule,
)


def _inspection_rule(value: dict[str, Any], path: str) -> None:
    if value["required"] and not value["points"]:
        raise fail(f"{path}.points", "a required inspection lists at least one point")
    if not value["required"] and value["points"]:
        raise fail(f"{path}.points", "only a required inspection lists points")


INSPECTION = Checked(
    Obj(
        required={
            "required": Bool(),
            "points": _unique_list(_line(200), min_items=0, max_items=50),
        }
    ),
    _inspection_rule,
)


def _fee_rule(value: dict[str, Any], path: str) -> None:
    if "amount_fen" in value and not value["charged"]:
        raise fail(f"{path}.amount_fen", "only for a charged item")


FEE = Checked(
    Obj(
        required={"charged": Bool(), "description": _line(200)},
        optional={"amount_fen": Int(1, 100_000_000)},
    ),
    _fee_rule,
)


def _form_field_rule(value: dict[str, Any], path: str) -> None:
    if value["type"] == "select" and not value.get("options"):
        raise fail(f"{path}.options", "a select field lists its options")
    if value["type"] != "select" and "options" in value:
        raise fail(f"{path}.options", "only a select field has options")


FORM_FIELD = Checked(
    Obj(
        required={
            "name": FIELD_NAME,
            "label": _line(100),
            "type": Enum(*FIELD_TYPES),
            "required": Bool(),
        },
        optional={
            "options": _unique_list(_line(100), min_items=1, max_items=50),
            "note": _text(300),
        },
    ),
    _form_field_rule,
)


def _item_rule(value: dict[str, Any], path: str) -> None:
    match = ITEM_CODE_RE.fullmatch(value["code"])
    assert match is not None  # the code's own schema checked the form
    if match.group(1) != value["handling_region"]:
        raise fail(f"{path}.code", "must start with the handling_region code")
    if value["promised_limit_days"] > value["legal_limit_days"]:
        raise fail(f"{path}.promised_limit_days", "must not exceed legal_limit_days")
    _unique(f"{path}.materials", (m["code"] for m in value["materials"]), "material code")
    _unique(f"{path}.form_fields", (f["name"] for f in value["form_fields"]), "field name")


ITEM_FIELDS: Mapping[str, Schema] = {
    "code": ITEM_CODE,
    "name": _line(200),
    "department": _line(100),
    "handling_region": REGION,
    "modes": _unique_list(Enum(*MODES), min_items=1, max_items=len(MODES)),
    "materials": List(MATERIAL, max_items=100),
    "legal_limit_days": Int(1, MAX_LIMIT_DAYS),
    "promised_limit_days": Int(1, MAX_LIMIT_DAYS),
    "inspection": INSPECTION,
    "result_type": Enum(*RESULT_TYPES),
    "delivery": _unique_list(Enum(*DELIVERY_METHODS), min_items=1, max_items=len(DELIVERY_METHODS)),
    "fee": FEE,
    "legal_basis": List(_line(300), min_items=1, max_items=20),
    "form_fields": List(FORM_FIELD, max_items=100),
    "warning_days": Int(0, 60),
    "supplement_deadline_days": Int(1, 60),
}
ITEM_OPTIONAL: Mapping[str, Schema] = {
    "conditions": List(_line(300), min_items=1, max_items=30),
    "phone": _line(40),
    "note": _text(1000),
    # For the public 办事指南 (docs/pages.md, "办事指南"): what the item is, words people search
    # for, the document they get, and where to complain.
    "summary": _text(1000),
    "keywords": _unique_list(_line(20), min_items=1, max_items=20),
    "result_name": _line(100),
    "complaint_phone": _line(40),
}

#: One catalogue item (事项), strictly: every field of ITEM_FIELDS, optionally ITEM_OPTIONAL.
ITEM_SCHEMA: Schema = Checked(Obj(required=ITEM_FIELDS, optional=ITEM_OPTIONAL), _item_rule)


def check_item(value: Any, path: str = "item") -> None:
    """Raise ProtocolError ``schema_invalid`` (with the path of the fault) unless ``value`` is
    a well-formed item."""
    ITEM_SCHEMA.check(value, path)


def check_items(region: str, items: Any, path: str = "items") -> None:
    """Check a catalogue's item list: each item well-formed, handled by ``region``, no code
    twice."""
    List(ITEM_SCHEMA, max_items=MAX_ITEMS).check(items, path)
    for index, item in enumerate(items):
        if item["handling_region"] != region:
            raise fail(
                f"{path}[{index}].handling_region", f"must be the catalogue's region {region}"
            )
    _unique(path, (item["code"] for item in items), "item code")


# -- typed view of an item -------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """A material (申请材料) of an item."""

    code: str
    name: str
    required: bool
    #: 容缺受理: may be missing at 收件 against a signed commitment, caught up later.
    deferrable: bool
    #: 告知承诺: may be replaced by a signed commitment.
    pledgeable: bool
    copies: int
    form: str
    media_types: tuple[str, ...]
    max_bytes: int
    note: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Material:
        return cls(
            code=data["code"],
            name=data["name"],
            required=data["required"],
            deferrable=data["deferrable"],
            pledgeable=data["pledgeable"],
            copies=data["copies"],
            form=data["form"],
            media_types=tuple(data["media_types"]),
            max_bytes=data["max_bytes"],
            note=data.get("note"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "name": self.name,
            "required": self.required,
            "deferrable": self.deferrable,
            "pledgeable": self.pledgeable,
            "copies": self.copies,
            "form": self.form,
            "media_types": list(self.media_types),
            "max_bytes": self.max_bytes,
        }
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Inspection:
    """Site inspection (云端勘验): whether the item needs one, and its checklist."""

    required: bool
    points: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"required": self.required, "points": list(self.points)}


@dataclass(frozen=True)
class Fee:
    charged: bool
    description: str
    #: A single fixed amount in 分 (fen), when there is one.
    amount_fen: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"charged": self.charged, "description": self.description}
        if self.amount_fen is not None:
            out["amount_fen"] = self.amount_fen
        return out


@dataclass(frozen=True)
class FormField:
    """A field of the application form the window fills in (一表申请)."""

    name: str
    label: str
    type: str
    required: bool
    options: tuple[str, ...] = ()
    note: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FormField:
        return cls(
            name=data["name"],
            label=data["label"],
            type=data["type"],
            required=data["required"],
            options=tuple(data.get("options", ())),
            note=data.get("note"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "required": self.required,
        }
        if self.type == "select":
            out["options"] = list(self.options)
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Item:
    """A service item (事项) as the catalogue publishes it.

    ``retired`` is not on the wire: a node keeps items a catalogue no longer lists, marked
    retired, so that cases opened under them still resolve their item.
    """

    code: str
    name: str
    department: str
    handling_region: str
    modes: tuple[str, ...]
    materials: tuple[Material, ...]
    legal_limit_days: int
    promised_limit_days: int
    inspection: Inspection
    result_type: str
    delivery: tuple[str, ...]
    fee: Fee
    legal_basis: tuple[str, ...]
    form_fields: tuple[FormField, ...]
    warning_days: int = DEFAULT_WARNING_DAYS
    supplement_deadline_days: int = DEFAULT_SUPPLEMENT_DEADLINE_DAYS
    conditions: tuple[str, ...] = ()
    phone: str | None = None
    note: str | None = None
    #: 事项简介: what the item is and who needs it (the public guide's first lines).
    summary: str | None = None
    #: Words people search for that the name lacks (``开店``, ``卫生证``).
    keywords: tuple[str, ...] = ()
    #: 结果名称: the document the applicant gets, e.g. ``《公共场所卫生许可证》``.
    result_name: str | None = None
    #: 监督投诉电话.
    complaint_phone: str | None = None
    retired: bool = field(default=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, retired: bool = False) -> Item:
        """The item of a dict that passed :func:`check_item`."""
        inspection = data["inspection"]
        fee = data["fee"]
        return cls(
            code=data["code"],
            name=data["name"],
            department=data["department"],
            handling_region=data["handling_region"],
            modes=tuple(data["modes"]),
            materials=tuple(Material.from_dict(m) for m in data["materials"]),
            legal_limit_days=data["legal_limit_days"],
            promised_limit_days=data["promised_limit_days"],
            inspection=Inspection(inspection["required"], tuple(inspection["points"])),
            result_type=data["result_type"],
            delivery=tuple(data["delivery"]),
            fee=Fee(fee["charged"], fee["description"], fee.get("amount_fen")),
            legal_basis=tuple(data["legal_basis"]),
            form_fields=tuple(FormField.from_dict(f) for f in data["form_fields"]),
            warning_days=data["warning_days"],
            supplement_deadline_days=data["supplement_deadline_days"],
            conditions=tuple(data.get("conditions", ())),
            phone=data.get("phone"),
            note=data.get("note"),
            summary=data.get("summary"),
            keywords=tuple(data.get("keywords", ())),
            result_name=data.get("result_name"),
            complaint_phone=data.get("complaint_phone"),
            retired=retired,
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form (every required field; optional ones only when set; no ``retired``)."""
        out: dict[str, Any] = {
            "code": self.code,
            "name": self.name,
            "department": self.department,
            "handling_region": self.handling_region,
            "modes": list(self.modes),
            "materials": [m.to_dict() for m in self.materials],
            "legal_limit_days": self.legal_limit_days,
            "promised_limit_days": self.promised_limit_days,
            "inspection": self.inspection.to_dict(),
            "result_type": self.result_type,
            "delivery": list(self.delivery),
            "fee": self.fee.to_dict(),
            "legal_basis": list(self.legal_basis),
            "form_fields": [f.to_dict() for f in self.form_fields],
            "warning_days": self.warning_days,
            "supplement_deadline_days": self.supplement_deadline_days,
        }
        if self.conditions:
            out["conditions"] = list(self.conditions)
        if self.phone is not None:
            out["phone"] = self.phone
        if self.note is not None:
            out["note"] = self.note
        if self.summary is not None:
            out["summary"] = self.summary
        if self.keywords:
            out["keywords"] = list(self.keywords)
        if self.result_name is not None:
            out["result_name"] = self.result_name
        if self.complaint_phone is not None:
            out["complaint_phone"] = self.complaint_phone
        return out

    def material(self, code: str) -> Material | None:
        return next((m for m in self.materials if m.code == code), None)


# -- the signed catalogue --------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """A verified catalogue."""

    region: str
    iat: int
    items: tuple[Item, ...]
    #: The kid that signed it.
    signed_by: str


def _item_dicts(items: Iterable[Item | Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [i.to_dict() if isinstance(i, Item) else dict(i) for i in items]


def sign_catalog(
    region: str,
    items: Iterable[Item | Mapping[str, Any]],
    now: float,
    key: Ed25519PrivateKey,
    kid: str,
) -> str:
    """Sign ``region``'s catalogue. The items are checked first: a node never publishes an item
    its partners would refuse (ProtocolError ``schema_invalid``)."""
    listed = _item_dicts(items)
    check_items(region, listed)
    claims = {"region": region, "iat": int(now), "items": listed}
    return jws.sign(claims, key, kid=kid, typ=TYP)


def verify_catalog(token: bytes | str, keys: KeySet, region: str, now: float) -> Catalog:
    """Verify ``region``'s catalogue under one of its keys in ``keys``.

    Refusals keep their own codes: framing (``malformed_jws`` ...), ``wrong_type``, the key
    (``unknown_issuer``, ``unknown_kid``, ``key_not_valid``, ``bad_signature``), the claims
    (``invalid_claims``, ``not_yet_valid`` for an ``iat`` in the future beyond the clock skew)
    and the items (``schema_invalid`` with the path, e.g. ``items[1].modes[0]``).
    """
    parsed = jws.parse(token, typ=TYP, max_size=MAX_CATALOG_BYTES)
    claims = parsed.claims
    c.require_exact(claims, CLAIMS, "catalogue claims")
    if c.region(claims, "region") != region:
        raise ProtocolError(
            ErrorCode.INVALID_CLAIMS, f"a catalogue of another region, not {region}"
        )
    key = keys.resolve(parsed.kid, region, now)
    jws.check_signature(parsed, key.public_key)
    iat = c.integer(claims, "iat")
    if iat > now + c.CLOCK_SKEW:
        raise ProtocolError(ErrorCode.NOT_YET_VALID, "iat is in the future")
    check_items(region, claims["items"])
    return Catalog(
        region=region,
        iat=iat,
        items=tuple(Item.from_dict(i) for i in claims["items"]),
        signed_by=parsed.kid,
    )
