"""An applicant's ID number and phone as the case keeps them: sealed at rest (the node's data
keys, node/storage/sealing.py), with a masked copy for lists and pages; and the citizen's query
code as a keyed blind index, never in a form that six digits' worth of guessing could undo
(docs/security.md)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from node.storage.sealing import SealsValues

ID_PLACE = "cases.applicant_id_number"
PHONE_PLACE = "cases.applicant_phone"
QUERY_PLACE = "cases.query_hash"
#: Query hashes made with the node's index key carry this prefix; older ones are plain
#: SHA-256 (still accepted, sealed away by nothing but the look-up limits).
QUERY_PREFIX = "h1:"


def mask_id_number(value: str) -> str:
    """410***********1234: enough to recognise, not enough to misuse."""
    if len(value) <= 8:
        return value[:1] + "*" * max(0, len(value) - 2) + value[-1:]
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:] if len(value) >= 7 else "****"


def applicant_columns(sealer: SealsValues, applicant: dict[str, Any]) -> dict[str, Any]:
    """The case columns of an applicant: sealed ID number and phone, and their masked copies."""
    return {
        "applicant_kind": applicant["kind"],
        "applicant_name": applicant["name"],
        "applicant_id_type": applicant["id_type"],
        "applicant_id_number": sealer.seal(applicant["id_number"], ID_PLACE),
        "applicant_phone": sealer.seal(applicant["phone"], PHONE_PLACE),
        "applicant_id_masked": mask_id_number(applicant["id_number"]),
        "applicant_phone_masked": mask_phone(applicant["phone"]),
    }


def revealed(sealer: SealsValues, row: Any) -> dict[str, str]:
    """The full ID number and phone of a case row."""
    return {
        "id_number": sealer.open(row.applicant_id_number, ID_PLACE),
        "phone": sealer.open(row.applicant_phone, PHONE_PLACE),
    }


def masked_id(row: Any) -> str:
    return str(row.applicant_id_masked or mask_id_number(row.applicant_id_number))


def masked_phone(row: Any) -> str:
    return str(row.applicant_phone_masked or mask_phone(row.applicant_phone))


def query_hash(sealer: SealsValues, case_no: str, code: str) -> str:
    """What the case keeps of its query code: an HMAC under the node's index key."""
    return QUERY_PREFIX + sealer.index(f"{case_no}:{code}", QUERY_PLACE)[: 64 - len(QUERY_PREFIX)]


def query_matches(sealer: SealsValues, case_no: str, code: str, stored: str | None) -> bool:
    """Whether ``code`` is the query code of case ``case_no`` (constant time; the same work
    for an unknown case, whose ``stored`` is None)."""
    expected = stored or QUERY_PREFIX + "0" * (64 - len(QUERY_PREFIX))
    if expected.startswith(QUERY_PREFIX):
        given = query_hash(sealer, case_no, code)
    else:  # made before the index key: plain SHA-256
        given = hashlib.sha256(f"{case_no}:{code}".encode()).hexdigest()
    return hmac.compare_digest(given, expected) and stored is not None
