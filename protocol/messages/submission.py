"""``case.submit``: the receiving region forwards an application taken at its window.

The applicant and an agent are checked by document type (``protocol.identifiers``); each
material is provided, deferred (容缺) or pledged (告知承诺).
"""

from __future__ import annotations

from typing import Any

from protocol import identifiers
from protocol.messages.fields import (
    CASE_NO,
    CODE,
    DISPLAY_NAME,
    FILE_REF,
    NOTE,
    PHONE,
    SHA256,
    Rule,
    line,
)
from protocol.schema import (
    Bool,
    Checked,
    Date,
    DateTime,
    Enum,
    FreeObject,
    Int,
    List,
    Nullable,
    Obj,
    Schema,
    Str,
    fail,
)


def _id_rule(kind_field: str | None) -> Rule:
    def rule(value: dict[str, Any], path: str) -> None:
        id_type = value["id_type"]
        if kind_field is None and id_type not in identifiers.PERSON_ID_TYPES:
            raise fail(f"{path}.id_type", "must be a document of a natural person")
        if kind_field is not None:
            org = value[kind_field] == "org"
            if org and id_type != "unified_social_credit_code":
                raise fail(f"{path}.id_type", "an org applies with its unified_social_credit_code")
            if not org and id_type not in identifiers.PERSON_ID_TYPES:
                raise fail(f"{path}.id_type", "must be a document of a natural person")
        fault = identifiers.id_fault(id_type, value["id_number"])
        if fault is not None:
            raise fail(f"{path}.id_number", f"{identifiers.FAULT_TEXT[fault]} for {id_type}")

    return rule


ID_TYPE = Enum(*identifiers.ID_TYPES)
ID_NUMBER = Str(min_len=1, max_len=40)

APPLICANT = Checked(
    Obj(
        required={
            "kind": Enum("person", "org"),
            "name": line(200),
            "id_type": ID_TYPE,
            "id_number": ID_NUMBER,
            "phone": PHONE,
        }
    ),
    _id_rule("kind"),
)

AGENT = Checked(
    Obj(
        required={
            "name": line(100),
            "id_type": ID_TYPE,
            "id_number": ID_NUMBER,
            "phone": PHONE,
        },
        optional={"relation": line(50), "authorization": FILE_REF},
    ),
    _id_rule(None),
)


def _material_rule(value: dict[str, Any], path: str) -> None:
    status = value["status"]
    if status == "provided" and value["blob"] is None:
        raise fail(f"{path}.blob", "is required for a provided material")
    if status != "provided" and value["blob"] is not None:
        raise fail(f"{path}.blob", f"must be null for a {status} material")
    if "deferred_until" in value and status != "deferred":
        raise fail(f"{path}.deferred_until", "only for a deferred material")
    if "commitment" in value and status == "provided":
        raise fail(f"{path}.commitment", "only for a deferred or pledged material")


SUBMIT_MATERIAL = Checked(
    Obj(
        required={
            "code": CODE,
            "name": line(200),
            "status": Enum("provided", "deferred", "pledged"),
            "blob": Nullable(SHA256),
        },
        optional={
            "original_verified": Bool(),
            "deferred_until": Date(),
            "commitment": FILE_REF,
        },
    ),
    _material_rule,
)


def _delivery_rule(value: dict[str, Any], path: str) -> None:
    if value["method"] == "mail" and value["address"] is None:
        raise fail(f"{path}.address", "is required for mail")
    if value["method"] == "window" and value["address"] is not None:
        raise fail(f"{path}.address", "must be null for window pickup")


DELIVERY = Checked(
    Obj(
        required={"method": Enum("window", "mail"), "address": Nullable(line(300))},
        optional={
            "recipient": line(100),
            "phone": PHONE,
            "postcode": Str(min_len=6, max_len=6, pattern=r"[0-9]{6}"),
        },
    ),
    _delivery_rule,
)


def _bundle_rule(value: dict[str, Any], path: str) -> None:
    if value["part"] > value["parts"]:
        raise fail(f"{path}.part", "must not exceed parts")


BUNDLE = Checked(
    Obj(
        required={"bundle_no": CASE_NO, "part": Int(1, 20), "parts": Int(2, 20)},
        optional={"name": line(200)},
    ),
    _bundle_rule,
)

RECEIVED_BY = Obj(
    required={"window": line(100), "clerk": DISPLAY_NAME},
    optional={"phone": PHONE},
)


def _submit_rule(value: dict[str, Any], path: str) -> None:
    if value["mode"] == "joint" and "bundle" not in value:
        raise fail(f"{path}.bundle", "is required for mode joint")
    if value["mode"] != "joint" and "bundle" in value:
        raise fail(f"{path}.bundle", "only for mode joint")
    seen: set[str] = set()
    for index, material in enumerate(value["materials"]):
        if material["code"] in seen:
            raise fail(f"{path}.materials[{index}].code", "listed twice")
        seen.add(material["code"])


SUBMIT = Checked(
    Obj(
        required={
            "case_no": CASE_NO,
            "item_code": CODE,
            "mode": Enum("proxy", "online", "joint"),
            "applicant": APPLICANT,
            "form": FreeObject(),
            "materials": List(SUBMIT_MATERIAL, max_items=100),
            "identity_verified": Bool(),
            "delivery": DELIVERY,
            "received_at": DateTime(),
        },
        optional={
            "agent": AGENT,
            "bundle": BUNDLE,
            "received_by": RECEIVED_BY,
            "note": NOTE,
        },
    ),
    _submit_rule,
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.submit": SUBMIT,
}
