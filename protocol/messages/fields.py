"""Field types and rules shared by the message families (``protocol.messages``).

Files named by sha256 (``SHA256``, ``FILE_REF``, the envelope's ``BLOBS``), text for people
(``line``, ``text``), identifiers (``UUID``, ``CASE_NO``, ``CODE``, ``PHONE``), documents issued
to the applicant, and ``not_before`` for two dates of one body.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from protocol import identifiers
from protocol.schema import Enum, Int, List, Obj, Str, fail

#: A rule across the fields of an object (see ``protocol.schema.Checked``).
Rule = Callable[[Any, str], None]

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


#: C0 and C1 control characters; in free text, tab and line breaks are allowed.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def is_line(value: str) -> bool:
    return value != "" and value.strip() == value and _CONTROL.search(value) is None


def is_text(value: str) -> bool:
    return value.strip() != "" and _TEXT_CONTROL.search(value) is None


def line(max_len: int) -> Str:
    """One line of text for people: not blank, no control characters, no outer spaces."""
    return Str(
        min_len=1,
        max_len=max_len,
        check_fn=is_line,
        check_message="must be one line of text without control characters or outer spaces",
    )


def text(max_len: int) -> Str:
    """Free text for people (reasons, comments): not blank; line breaks allowed."""
    return Str(
        min_len=1,
        max_len=max_len,
        check_fn=is_text,
        check_message="must be text that is not blank and has no control characters",
    )


def not_before(later: str, earlier: str) -> Rule:
    """Rule: date field ``later`` is not before date field ``earlier`` (ISO dates compare)."""

    def rule(value: dict[str, Any], path: str) -> None:
        if value[later] < value[earlier]:
            raise fail(f"{path}.{later}", f"must not be before {earlier}")

    return rule


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
