"""Message types and the schema of each body (DESIGN §4, docs/protocol.md)."""

from __future__ import annotations

from typing import Any

from protocol.errors import ErrorCode, ProtocolError
from protocol.schema import Int, List, Obj, Schema, Str, fail

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

#: Body schema of every message type. Filled per type below.
BODY_SCHEMAS: dict[str, Schema] = {}

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


# Provisional: the generic body every type accepts until its schema lands.
for _typ in MESSAGE_TYPES:
    BODY_SCHEMAS[_typ] = Obj(required={}, optional={"note": Str(max_len=2000)})
