"""Message types and the schema of each body (docs/protocol.md, docs/messages.md).

Every body is an object with exactly the fields its type lists: unknown fields, missing required
fields and wrong types are refused with ``schema_invalid`` and the JSON path of the fault.
Optional fields are left out when they have no value; ``null`` appears only where a schema says
so (``case.submit``: a material's ``blob``, the delivery ``address``).

Conventions shared by all types:

- a file is referred to as ``"blob": "<sha256 hex>"`` and must be listed in the envelope's
  ``blobs``;
- ``*_at`` fields are date-times with an offset (``2026-11-22T09:30:00+08:00``), ``*_on``,
  ``deadline``, ``promised_date`` and ``*_until`` fields are dates (``2026-12-18``);
- people are named by display name (``"王芳"``), never by login;
- codes (``code``, ``kind``, ``status`` ...) are lower-case English, stable forever.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable
from typing import Any

from protocol import identifiers
from protocol.errors import ErrorCode, ProtocolError
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

SHA256 = Str(pattern=r"[0-9a-f]{64}", min_len=64, max_len=64)
BLOB_REF = Obj(
    required={
        "sha256": SHA256,
        "size": Int(minimum=0),
        "media_type": Str(max_len=100, pattern=r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+"),
        "name": Str(min_len=1, max_len=200),
    }
)
BLOBS = List(BLOB_REF, max_items=200)

MESSAGE_TYPES: tuple[str, ...] = (
    "case.submit",
    "case.accepted",
    "case.not_accepted",
    "case.supplement_requested",
    "case.supplemented",
    "case.inspection_scheduled",
    "case.inspection_completed",
    "case.decided",
    "case.dispatched",
    "case.delivered",
    "case.withdraw_requested",
    "case.withdrawn",
    "case.rated",
    "case.rectified",
    "case.progress",
    "case.error",
)


# -- field types -----------------------------------------------------------------------------

#: A rule across the fields of an object (see ``protocol.schema.Checked``).
Rule = Callable[[Any, str], None]


#: C0 and C1 control characters; in free text, tab and line breaks are allowed.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _is_line(value: str) -> bool:
    return value != "" and value.strip() == value and _CONTROL.search(value) is None


def _is_text(value: str) -> bool:
    return value.strip() != "" and _TEXT_CONTROL.search(value) is None


def line(max_len: int) -> Str:
    """One line of text for people: not blank, no control characters, no outer spaces."""
    return Str(
        min_len=1,
        max_len=max_len,
        check_fn=_is_line,
        check_message="must be one line of text without control characters or outer spaces",
    )


def text(max_len: int) -> Str:
    """Free text for people (reasons, comments): not blank; line breaks allowed."""
    return Str(
        min_len=1,
        max_len=max_len,
        check_fn=_is_text,
        check_message="must be text that is not blank and has no control characters",
    )


#: Lower-case canonical UUID (``jti``, rating and session ids).
UUID = Str(
    min_len=36,
    max_len=36,
    pattern=r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
)
#: Case number (受理编号), printed on the 收件凭证: upper-case letters, digits and hyphens.
CASE_NO = Str(min_len=6, max_len=40, pattern=r"[A-Z0-9][A-Z0-9-]*[A-Z0-9]")
#: Item (事项) and material codes of the catalogue, e.g. ``11430400MB1524367X4000117001``.
CODE = Str(min_len=1, max_len=64, pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*")
PHONE = Str(
    min_len=7,
    max_len=20,
    check_fn=identifiers.is_phone,
    check_message="must be a mainland mobile (1[3-9] and 9 digits), a landline with area code "
    "such as 0734-8888888, or +<country code><number> outside the mainland",
)
DISPLAY_NAME = line(100)
NOTE = text(1000)
#: ``{"blob": sha256}``: a single file, e.g. a signed commitment (承诺书).
FILE_REF = Obj(required={"blob": SHA256})
#: A document issued to the applicant (通知书, 决定书, 证照).
DOCUMENT = Obj(
    required={"blob": SHA256, "name": line(200)},
    optional={"kind": Enum("notice", "decision", "license", "other")},
)
DOCUMENTS = List(DOCUMENT, max_items=20)


# -- case.submit -----------------------------------------------------------------------------


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


# -- handling region: accept, refuse, supplement ---------------------------------------------


def _not_before(later: str, earlier: str) -> Rule:
    """Rule: date field ``later`` is not before date field ``earlier`` (ISO dates compare)."""

    def rule(value: dict[str, Any], path: str) -> None:
        if value[later] < value[earlier]:
            raise fail(f"{path}.{later}", f"must not be before {earlier}")

    return rule


ACCEPTED = Checked(
    Obj(
        required={
            "accepted_on": Date(),
            "time_limit_days": Int(1, 365),
            "promised_date": Date(),
            "approver": DISPLAY_NAME,
        },
        optional={
            "accepted_at": DateTime(),
            "provisional": Bool(),
            "warning_days": Int(0, 60),
            "notice_no": line(64),
            "documents": DOCUMENTS,
            "note": NOTE,
        },
    ),
    _not_before("promised_date", "accepted_on"),
)

NOT_ACCEPTED = Obj(
    required={"reason": text(1000)},
    optional={
        "legal_basis": text(500),
        "not_accepted_at": DateTime(),
        "approver": DISPLAY_NAME,
        "notice_no": line(64),
        "documents": DOCUMENTS,
    },
)

SUPPLEMENT_ITEM = Obj(
    required={"name": line(200), "requirement": text(500)},
    optional={"material_code": CODE},
)

SUPPLEMENT_REQUESTED = Checked(
    Obj(
        required={
            "items": List(SUPPLEMENT_ITEM, min_items=1, max_items=50),
            "deadline": Date(),
            "requested_on": Date(),
        },
        optional={
            "notice_no": line(64),
            "approver": DISPLAY_NAME,
            "documents": DOCUMENTS,
            "note": NOTE,
        },
    ),
    _not_before("deadline", "requested_on"),
)


def _supplemented_rule(value: dict[str, Any], path: str) -> None:
    if value.get("deferred"):
        for index, material in enumerate(value["materials"]):
            if "code" not in material:
                raise fail(f"{path}.materials[{index}].code", "is required for a deferred material")


SUPPLEMENTED = Checked(
    Obj(
        required={
            "materials": List(
                Obj(required={"name": line(200), "blob": SHA256}, optional={"code": CODE}),
                min_items=1,
                max_items=50,
            )
        },
        optional={
            "supplemented_at": DateTime(),
            "note": NOTE,
            # True: 容缺 materials caught up (each names its catalogue code), not a 补正 answer.
            "deferred": Bool(),
            "clerk": DISPLAY_NAME,
        },
    ),
    _supplemented_rule,
)


# -- inspection ------------------------------------------------------------------------------


def _scheduled_rule(value: dict[str, Any], path: str) -> None:
    if not any(p["role"] == "inspector" for p in value["participants"]):
        raise fail(f"{path}.participants", "must name at least one inspector")


INSPECTION_SCHEDULED = Checked(
    Obj(
        required={
            "session_id": UUID,
            "scheduled_at": DateTime(),
            "join_url": Str(min_len=10, max_len=2000, pattern=r"https?://[!-~]+"),
            "checklist": List(line(200), max_items=100),
            "participants": List(
                Obj(
                    required={
                        "role": Enum("inspector", "applicant", "agent", "clerk", "expert", "other"),
                        "name": DISPLAY_NAME,
                    }
                ),
                min_items=1,
                max_items=20,
            ),
        },
        optional={
            "join_token": Str(min_len=4, max_len=512, pattern=r"[A-Za-z0-9._~-]+"),
            "duration_minutes": Int(5, 480),
            "site_address": line(300),
            "note": NOTE,
        },
    ),
    _scheduled_rule,
)


def _completed_rule(value: dict[str, Any], path: str) -> None:
    kinds = [f["kind"] for f in value["files"]]
    if kinds.count("manifest") != 1:
        raise fail(f"{path}.files", "must hold exactly one file of kind manifest")
    if value["result"] != "aborted" and "record" not in kinds:
        raise fail(f"{path}.files", "must hold the signed record unless the result is aborted")
    for index, entry in enumerate(value["files"]):
        if "duration_s" in entry and entry["kind"] != "recording":
            raise fail(f"{path}.files[{index}].duration_s", "only for a recording")


INSPECTION_FILE = Obj(
    required={"blob": SHA256, "kind": Enum("recording", "snapshot", "record", "manifest")},
    optional={"duration_s": Int(0, 86_400), "taken_at": DateTime()},
)

INSPECTION_COMPLETED = Checked(
    Obj(
        required={
            "session_id": UUID,
            "completed_at": DateTime(),
            "result": Enum("pass", "conditional", "fail", "aborted"),
            "files": List(INSPECTION_FILE, min_items=1, max_items=200),
        },
        optional={
            "started_at": DateTime(),
            "inspector": DISPLAY_NAME,
            "findings": text(2000),
            "note": NOTE,
        },
    ),
    _completed_rule,
)


# -- decision, hand-over ---------------------------------------------------------------------


def _decided_rule(value: dict[str, Any], path: str) -> None:
    if value["outcome"] == "denied":
        if "reason" not in value:
            raise fail(f"{path}.reason", "is required when denied")
        for name in ("certificate_no", "valid_until"):
            if name in value:
                raise fail(f"{path}.{name}", "only when approved")
    elif not value["documents"]:
        raise fail(f"{path}.documents", "an approval carries at least one document")


DECIDED = Checked(
    Obj(
        required={
            "outcome": Enum("approved", "denied"),
            "decided_at": DateTime(),
            "documents": DOCUMENTS,
        },
        optional={
            "reason": text(1000),
            "legal_basis": text(500),
            "decision_no": line(64),
            "certificate_no": line(100),
            "valid_until": Date(),
            "approver": DISPLAY_NAME,
        },
    ),
    _decided_rule,
)


def _dispatched_rule(value: dict[str, Any], path: str) -> None:
    if value["method"] == "mail":
        for name in ("courier", "tracking_no"):
            if name not in value:
                raise fail(f"{path}.{name}", "is required for mail")
    else:
        for name in ("courier", "tracking_no"):
            if name in value:
                raise fail(f"{path}.{name}", "only for mail")


DISPATCHED = Checked(
    Obj(
        required={"method": Enum("mail", "window"), "dispatched_at": DateTime()},
        optional={
            "courier": line(50),
            "tracking_no": Str(min_len=4, max_len=40, pattern=r"[A-Za-z0-9-]+"),
            "pickup_location": line(200),
            "note": NOTE,
        },
    ),
    _dispatched_rule,
)

DELIVERED = Obj(
    required={"delivered_at": DateTime(), "method": Enum("mail", "window")},
    optional={"recipient": line(100), "proof": FILE_REF, "note": NOTE},
)


# -- withdrawal ------------------------------------------------------------------------------

WITHDRAW_REQUESTED = Obj(
    required={"reason": text(500), "requested_at": DateTime()},
    optional={"signed_request": FILE_REF, "note": NOTE},
)

#: Who asked for a withdrawal the handling region confirms: the window (its
#: ``case.withdraw_requested``), or the applicant in person at the handling region, by phone or
#: by letter (recorded by its staff).
WITHDRAWAL_REQUESTER = Obj(
    required={"kind": Enum("window", "applicant"), "requested_at": DateTime()},
    optional={"name": line(100), "channel": Enum("window", "hall", "phone", "mail")},
)

WITHDRAWN = Obj(
    required={"withdrawn_at": DateTime()},
    optional={"reason": text(500), "requested_by": WITHDRAWAL_REQUESTER, "note": NOTE},
)


# -- rating and rectification ----------------------------------------------------------------


def _rated_rule(value: dict[str, Any], path: str) -> None:
    if value["level"] <= 2 and "comment" not in value:
        raise fail(f"{path}.comment", "is required for a level 1 or 2 rating")


RATED = Checked(
    Obj(
        required={
            "rating_id": UUID,
            "level": Int(1, 5),
            "stage": Enum("accept", "decide"),
            "channel": Int(1, 7),
            "real_name": Bool(),
            "rated_at": DateTime(),
        },
        optional={"comment": text(1000)},
    ),
    _rated_rule,
)

RECTIFIED = Obj(
    required={
        "rating_id": UUID,
        "rectification": text(2000),
        "rectified_at": DateTime(),
    },
    optional={
        "follow_up": Obj(
            required={
                "at": DateTime(),
                "by": DISPLAY_NAME,
                "result": text(1000),
                "satisfied": Bool(),
            },
            optional={"channel": Enum("phone", "sms", "visit", "online")},
        ),
        "note": NOTE,
    },
)


# -- progress and errors ---------------------------------------------------------------------


def _progress_rule(value: dict[str, Any], path: str) -> None:
    kind = value["kind"]
    if kind == "extension" and "extension_days" not in value:
        raise fail(f"{path}.extension_days", "is required for an extension")
    only = {
        "extension_days": "extension",
        "approved_by": "extension",
        "procedure": "pause",
        "expected_days": "pause",
    }
    for name, allowed in only.items():
        if name in value and kind != allowed:
            raise fail(f"{path}.{name}", f"only for kind {allowed}")


PROGRESS = Checked(
    Obj(
        required={
            "kind": Enum("pause", "resume", "extension"),
            "reason": text(500),
            "on": Date(),
        },
        optional={
            "procedure": Enum("hearing", "testing", "expert_review", "other"),
            "expected_days": Int(1, 365),
            "extension_days": Int(1, 60),
            "approved_by": DISPLAY_NAME,
            "note": NOTE,
        },
    ),
    _progress_rule,
)

ERROR = Obj(
    required={
        "code": Str(min_len=2, max_len=64, pattern=r"[a-z][a-z0-9_]*"),
        "detail": Str(
            max_len=1000,
            check_fn=lambda s: s == "" or _is_text(s),
            check_message="must have no control characters",
        ),
        "ref": UUID,
    },
)


#: Body schema of every message type.
BODY_SCHEMAS: dict[str, Schema] = {
    "case.submit": SUBMIT,
    "case.accepted": ACCEPTED,
    "case.not_accepted": NOT_ACCEPTED,
    "case.supplement_requested": SUPPLEMENT_REQUESTED,
    "case.supplemented": SUPPLEMENTED,
    "case.inspection_scheduled": INSPECTION_SCHEDULED,
    "case.inspection_completed": INSPECTION_COMPLETED,
    "case.decided": DECIDED,
    "case.dispatched": DISPATCHED,
    "case.delivered": DELIVERED,
    "case.withdraw_requested": WITHDRAW_REQUESTED,
    "case.withdrawn": WITHDRAWN,
    "case.rated": RATED,
    "case.rectified": RECTIFIED,
    "case.progress": PROGRESS,
    "case.error": ERROR,
}


# -- validation ------------------------------------------------------------------------------


def validate_blobs(blobs: Any) -> None:
    BLOBS.check(blobs, "blobs")
    seen: set[str] = set()
    for index, blob in enumerate(blobs):
        if blob["sha256"] in seen:
            raise fail(f"blobs[{index}].sha256", "listed twice")
        seen.add(blob["sha256"])


def validate_body(typ: str, body: Any, blobs: list[dict[str, Any]]) -> None:
    """Refuse ``body`` unless it matches the schema of message type ``typ``."""
    schema = BODY_SCHEMAS.get(typ)
    if typ not in MESSAGE_TYPES or schema is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE_TYPE, f"unknown message type {typ!r}")
    schema.check(body, "body")
    listed = {b["sha256"] for b in blobs}
    for path, digest in _blob_refs(body, "body"):
        if digest not in listed:
            raise fail(path, "refers to a blob not listed in blobs")


def _blob_refs(value: Any, path: str) -> list[tuple[str, str]]:
    """Every ``"blob": "<sha256>"`` inside a body, with its path."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "blob" and isinstance(item, str):
                found.append((f"{path}.{key}", item))
            else:
                found.extend(_blob_refs(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_blob_refs(item, f"{path}[{index}]"))
    return found


# -- examples --------------------------------------------------------------------------------


def _file(name: str, media_type: str, content: bytes) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": len(content),
        "media_type": media_type,
        "name": name,
    }


_LICENCE_SCAN = _file("营业执照.pdf", "application/pdf", b"example: business licence scan")
_LEASE = _file("租赁合同.pdf", "application/pdf", b"example: lease contract")
_COMMITMENT = _file("容缺承诺书.pdf", "application/pdf", b"example: signed commitment")
_FLOOR_PLAN = _file("经营场所平面图.pdf", "application/pdf", b"example: corrected floor plan")
_PERMIT = _file("食品经营许可证.pdf", "application/pdf", b"example: food business permit")
_DECISION = _file("准予行政许可决定书.pdf", "application/pdf", b"example: approval decision")
_RECORDING = _file("勘验录像.webm", "video/webm", b"example: inspection recording")
_SNAPSHOT = _file("后厨.jpg", "image/jpeg", b"example: inspection snapshot")
_RECORD = _file("勘验笔录.pdf", "application/pdf", b"example: signed inspection record")
_MANIFEST = _file("evidence-manifest.json", "application/json", b'{"example": "manifest"}')
_SIGNED_RECEIPT = _file("签收单.jpg", "image/jpeg", b"example: signed delivery slip")

_RATING_ID = "5f0c6b2e-8d4a-4c1e-9a57-2b7d1f3e6a90"
_SESSION_ID = "0b8e4f6a-3c2d-4e1f-8a9b-7c6d5e4f3a2b"

_EXAMPLES: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "case.submit": (
        {
            "case_no": "430400-20261122-00017",
            "item_code": "11370500MB2850123X4000117001",
            "mode": "proxy",
            "applicant": {
                "kind": "org",
                "name": "衡阳市雁城餐饮管理有限公司",
                "id_type": "unified_social_credit_code",
                "id_number": "91430400MA4L2B7C02",
                "phone": "13807340001",
            },
            "form": {"business_scope": "热食类食品制售", "area_m2": 120},
            "materials": [
                {
                    "code": "M01",
                    "name": "营业执照",
                    "status": "provided",
                    "blob": _LICENCE_SCAN["sha256"],
                    "original_verified": True,
                },
                {
                    "code": "M02",
                    "name": "经营场所使用证明",
                    "status": "provided",
                    "blob": _LEASE["sha256"],
                },
                {
                    "code": "M03",
                    "name": "食品安全管理制度",
                    "status": "deferred",
                    "blob": None,
                    "deferred_until": "2026-12-04",
                    "commitment": {"blob": _COMMITMENT["sha256"]},
                },
            ],
            "identity_verified": True,
            "delivery": {
                "method": "mail",
                "address": "湖南省衡阳市蒸湘区解放大道 1 号",
                "recipient": "王芳",
                "phone": "13807340001",
                "postcode": "421001",
            },
            "received_at": "2026-11-22T09:30:00+08:00",
            "agent": {
                "name": "王芳",
                "id_type": "resident_id",
                "id_number": "430405199003070026",
                "phone": "13807340001",
                "relation": "公司员工",
            },
            "received_by": {"window": "衡阳市政务服务中心 跨域通办 3 号窗口", "clerk": "李明"},
        },
        [_LICENCE_SCAN, _LEASE, _COMMITMENT],
    ),
    "case.accepted": (
        {
            "accepted_on": "2026-11-23",
            "time_limit_days": 20,
            "promised_date": "2026-12-21",
            "approver": "张伟",
            "accepted_at": "2026-11-23T10:05:00+08:00",
            "provisional": False,
            "warning_days": 3,
            "notice_no": "东市监食许受〔2026〕1187号",
        },
        [],
    ),
    "case.not_accepted": (
        {
            "reason": "申请事项依法不属于本机关职权范围",
            "legal_basis": "《中华人民共和国行政许可法》第三十二条第一款第（二）项",
            "not_accepted_at": "2026-11-23T10:05:00+08:00",
            "approver": "张伟",
        },
        [],
    ),
    "case.supplement_requested": (
        {
            "items": [
                {
                    "material_code": "M02",
                    "name": "经营场所平面图",
                    "requirement": "标明加工区、储存区、清洗区的位置和面积",
                },
                {"name": "从业人员健康证明", "requirement": "全部从业人员的有效健康证明复印件"},
            ],
            "deadline": "2026-11-30",
            "requested_on": "2026-11-23",
            "notice_no": "东市监食补〔2026〕0412号",
            "approver": "张伟",
        },
        [],
    ),
    "case.supplemented": (
        {
            "materials": [
                {"code": "M02", "name": "经营场所平面图", "blob": _FLOOR_PLAN["sha256"]},
            ],
            "supplemented_at": "2026-11-25T15:20:00+08:00",
            "note": "健康证明已在平面图后附",
        },
        [_FLOOR_PLAN],
    ),
    "case.inspection_scheduled": (
        {
            "session_id": _SESSION_ID,
            "scheduled_at": "2026-11-27T14:00:00+08:00",
            "join_url": f"https://tongban.dongying.example/inspection/{_SESSION_ID}",
            "checklist": ["后厨布局与平面图一致", "洗手消毒设施", "冷藏设备温度"],
            "participants": [
                {"role": "inspector", "name": "赵强"},
                {"role": "applicant", "name": "王芳"},
            ],
            "join_token": "K7Q2-M9XD",
            "duration_minutes": 45,
            "site_address": "湖南省衡阳市蒸湘区解放大道 1 号",
        },
        [],
    ),
    "case.inspection_completed": (
        {
            "session_id": _SESSION_ID,
            "completed_at": "2026-11-27T14:41:00+08:00",
            "result": "pass",
            "files": [
                {"blob": _RECORDING["sha256"], "kind": "recording", "duration_s": 2280},
                {
                    "blob": _SNAPSHOT["sha256"],
                    "kind": "snapshot",
                    "taken_at": "2026-11-27T14:12:30+08:00",
                },
                {"blob": _RECORD["sha256"], "kind": "record"},
                {"blob": _MANIFEST["sha256"], "kind": "manifest"},
            ],
            "started_at": "2026-11-27T14:03:00+08:00",
            "inspector": "赵强",
            "findings": "现场布局与平面图一致，设施设备符合要求",
        },
        [_RECORDING, _SNAPSHOT, _RECORD, _MANIFEST],
    ),
    "case.decided": (
        {
            "outcome": "approved",
            "decided_at": "2026-12-02T16:00:00+08:00",
            "documents": [
                {"blob": _PERMIT["sha256"], "name": "食品经营许可证", "kind": "license"},
                {"blob": _DECISION["sha256"], "name": "准予行政许可决定书", "kind": "decision"},
            ],
            "decision_no": "东市监食许〔2026〕1187号",
            "certificate_no": "JY13705020012345",
            "valid_until": "2031-12-01",
            "approver": "张伟",
        },
        [_PERMIT, _DECISION],
    ),
    "case.dispatched": (
        {
            "method": "mail",
            "dispatched_at": "2026-12-03T10:00:00+08:00",
            "courier": "中国邮政 EMS",
            "tracking_no": "1234567890123",
        },
        [],
    ),
    "case.delivered": (
        {
            "delivered_at": "2026-12-04T11:30:00+08:00",
            "method": "mail",
            "recipient": "王芳",
            "proof": {"blob": _SIGNED_RECEIPT["sha256"]},
        },
        [_SIGNED_RECEIPT],
    ),
    "case.withdraw_requested": (
        {"reason": "申请人决定暂缓开业", "requested_at": "2026-11-24T09:10:00+08:00"},
        [],
    ),
    "case.withdrawn": (
        {"withdrawn_at": "2026-11-24T11:00:00+08:00", "reason": "申请人决定暂缓开业"},
        [],
    ),
    "case.rated": (
        {
            "rating_id": _RATING_ID,
            "level": 2,
            "stage": "decide",
            "channel": 4,
            "real_name": True,
            "rated_at": "2026-12-04T11:35:00+08:00",
            "comment": "补正通知没有一次说清楚，多跑了一趟",
        },
        [],
    ),
    "case.rectified": (
        {
            "rating_id": _RATING_ID,
            "rectification": "修订补正告知模板，要求一次列明全部材料；对经办人员开展培训",
            "rectified_at": "2026-12-10T17:00:00+08:00",
            "follow_up": {
                "at": "2026-12-11T10:00:00+08:00",
                "by": "陈静",
                "result": "申请人认可整改措施",
                "satisfied": True,
                "channel": "phone",
            },
        },
        [],
    ),
    "case.progress": (
        {
            "kind": "pause",
            "reason": "需对经营场所进行专家评审",
            "on": "2026-11-28",
            "procedure": "expert_review",
            "expected_days": 10,
        },
        [],
    ),
    "case.error": (
        {
            "code": "transition_not_allowed",
            "detail": "case.decided not allowed in state withdrawn",
            "ref": "3d6f0a2b-1c4e-4f8a-9b7d-5e2c1a0f9d83",
        },
        [],
    ),
}


def example_body(typ: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A valid body of message type ``typ`` and the ``blobs`` it names (fresh copies).

    For tests, the bench, test vectors and docs/messages.md. An unknown type gets an empty body
    and no blobs (``validate_body`` refuses the type itself), so tests can build envelopes of
    unknown types the same way.
    """
    body, blobs = _EXAMPLES.get(typ, ({}, []))
    return copy.deepcopy(body), copy.deepcopy(blobs)
