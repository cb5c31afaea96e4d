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

One module per message family holds its schemas and their ``SCHEMAS`` (type → schema);
``fields`` holds the field types they share, ``examples`` a valid body of every type. This
module builds the registry ``BODY_SCHEMAS`` from the families and validates bodies against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    acceptance,
    decision,
    error,
    handover,
    inspection,
    progress,
    rating,
    submission,
    supplement,
    withdrawal,
)
from protocol.messages.acceptance import ACCEPTED, NOT_ACCEPTED
from protocol.messages.decision import DECIDED
from protocol.messages.error import ERROR
from protocol.messages.examples import example_body
from protocol.messages.fields import (
    BLOB_REF,
    BLOBS,
    CASE_NO,
    CODE,
    DISPLAY_NAME,
    DOCUMENT,
    DOCUMENTS,
    FILE_REF,
    NOTE,
    PHONE,
    SHA256,
    UUID,
    Rule,
    line,
    text,
)
from protocol.messages.handover import DELIVERED, DISPATCHED
from protocol.messages.inspection import (
    INSPECTION_COMPLETED,
    INSPECTION_FILE,
    INSPECTION_SCHEDULED,
)
from protocol.messages.progress import PROGRESS
from protocol.messages.rating import RATED, RECTIFIED
from protocol.messages.submission import (
    AGENT,
    APPLICANT,
    BUNDLE,
    DELIVERY,
    ID_NUMBER,
    ID_TYPE,
    RECEIVED_BY,
    SUBMIT,
    SUBMIT_MATERIAL,
)
from protocol.messages.supplement import SUPPLEMENT_ITEM, SUPPLEMENT_REQUESTED, SUPPLEMENTED
from protocol.messages.withdrawal import WITHDRAW_REQUESTED, WITHDRAWAL_REQUESTER, WITHDRAWN
from protocol.schema import Schema, fail

__all__ = [
    "ACCEPTED",
    "AGENT",
    "APPLICANT",
    "BLOBS",
    "BLOB_REF",
    "BODY_SCHEMAS",
    "BUNDLE",
    "CASE_NO",
    "CODE",
    "DECIDED",
    "DELIVERED",
    "DELIVERY",
    "DISPATCHED",
    "DISPLAY_NAME",
    "DOCUMENT",
    "DOCUMENTS",
    "ERROR",
    "FAMILIES",
    "FILE_REF",
    "ID_NUMBER",
    "ID_TYPE",
    "INSPECTION_COMPLETED",
    "INSPECTION_FILE",
    "INSPECTION_SCHEDULED",
    "MESSAGE_TYPES",
    "NOTE",
    "NOT_ACCEPTED",
    "PHONE",
    "PROGRESS",
    "RATED",
    "RECEIVED_BY",
    "RECTIFIED",
    "SHA256",
    "SUBMIT",
    "SUBMIT_MATERIAL",
    "SUPPLEMENTED",
    "SUPPLEMENT_ITEM",
    "SUPPLEMENT_REQUESTED",
    "UUID",
    "WITHDRAWAL_REQUESTER",
    "WITHDRAWN",
    "WITHDRAW_REQUESTED",
    "Rule",
    "example_body",
    "line",
    "registry",
    "text",
    "validate_blobs",
    "validate_body",
]

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


# -- the registry ----------------------------------------------------------------------------


def registry(families: Iterable[Mapping[str, Schema]]) -> dict[str, Schema]:
    """One type → schema map from the ``SCHEMAS`` of each family; a type listed twice raises."""
    merged: dict[str, Schema] = {}
    for family in families:
        for typ, schema in family.items():
            if typ in merged:
                raise ValueError(f"message type {typ!r} is registered twice")
            merged[typ] = schema
    return merged


#: The message families, one module each, in the order of ``MESSAGE_TYPES``.
FAMILIES = (
    submission,
    acceptance,
    supplement,
    inspection,
    decision,
    handover,
    withdrawal,
    rating,
    progress,
    error,
)
#: Body schema of every message type, in the order of ``MESSAGE_TYPES``.
BODY_SCHEMAS: dict[str, Schema] = registry(family.SCHEMAS for family in FAMILIES)
if list(BODY_SCHEMAS) != list(MESSAGE_TYPES):
    raise ValueError("the families' schemas must be those of MESSAGE_TYPES, in that order")


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
