"""The hash chain of a case's events.

Each event's hash covers the previous event's hash and the event's own fields in canonical
JSON; the case row keeps the newest hash and the count. An edited row breaks its own hash, a
removed or reordered row breaks the links or the seq run, a removed newest row no longer
matches the case's head.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def hashed_fields(
    *,
    case_id: int,
    seq: int,
    at: float,
    actor: str,
    action: str,
    from_status: str | None,
    to_status: str | None,
    data: str,
) -> dict[str, Any]:
    """The fields an event hash covers (``data`` as stored text, so it is hashed verbatim)."""
    return {
        "case_id": case_id,
        "seq": seq,
        "at": repr(float(at)),
        "actor": actor,
        "action": action,
        "from": from_status,
        "to": to_status,
        "data": data,
    }


@dataclass(frozen=True)
class ChainFault:
    case_id: int
    seq: int | None
    problem: str


def verify_chain(
    case_id: int, events: list[Any], *, head_hash: str, event_count: int
) -> list[ChainFault]:
    """Check ``events`` (rows with seq, at, actor, action, from_status, to_status, data,
    prev_hash, hash; in id order) of one case; returns every fault found."""
    faults: list[ChainFault] = []
    prev = GENESIS
    for expected_seq, row in enumerate(events, start=1):
        if row.seq != expected_seq:
            faults.append(
                ChainFault(case_id, row.seq, f"seq {row.seq} where {expected_seq} expected")
            )
        if row.prev_hash != prev:
            faults.append(ChainFault(case_id, row.seq, "link to the previous event broken"))
        fields = hashed_fields(
            case_id=case_id,
            seq=row.seq,
            at=row.at,
            actor=row.actor,
            action=row.action,
            from_status=row.from_status,
            to_status=row.to_status,
            data=row.data,
        )
        if event_hash(row.prev_hash, fields) != row.hash:
            faults.append(ChainFault(case_id, row.seq, "event content does not match its hash"))
        prev = row.hash
    if len(events) != event_count:
        faults.append(
            ChainFault(case_id, None, f"{len(events)} events, case records {event_count}")
        )
    if prev != (head_hash or GENESIS):
        faults.append(ChainFault(case_id, None, "newest event is not the case's recorded head"))
    return faults
