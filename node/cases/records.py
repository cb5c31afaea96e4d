"""Reading and writing case rows. ``record`` is the one function that changes a case: it
writes the new state, appends the hash-chained event and queues the envelope for the other
side, all inside the caller's transaction."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases.audit import GENESIS, event_hash, hashed_fields
from node.cases.deadlines import TIME_STATUS_LABELS, open_pause, time_status
from node.cases.lifecycle import PROVINCIAL_CODES, STATUS_LABELS, Mode, Side, Status, sides_of
from node.cases.models import case_events, cases
from node.federation.outbox import Outbox
from node.http_errors import ApiError
from protocol.errors import ProtocolError


@dataclass(frozen=True)
class Envelope:
    """A message for the other side of the case, sent when the transaction commits."""

    typ: str
    body: dict[str, Any]
    blobs: list[dict[str, Any]] | None = None


async def load_for_update(conn: AsyncConnection, case_id: int) -> Row[Any] | None:
    return (
        await conn.execute(select(cases).where(cases.c.id == case_id).with_for_update())
    ).first()


async def load_by_xt(conn: AsyncConnection, xt_id: str, *, lock: bool = True) -> Row[Any] | None:
    query = select(cases).where(cases.c.xt_id == xt_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


def sides(row: Row[Any], region: str) -> frozenset[Side]:
    return sides_of(Mode(row.mode), row.receiving_region, row.handling_region, region)


def spans_two_nodes(row: Row[Any]) -> bool:
    return row.receiving_region != row.handling_region and row.mode != Mode.ONLINE


async def record(
    conn: AsyncConnection,
    row: Row[Any],
    *,
    region: str,
    outbox: Outbox,
    actor: str,
    action: str,
    to_status: Status | None = None,
    changes: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    envelope: Envelope | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Apply one change to case ``row``: columns, event, chain head, outgoing envelope.

    Returns the columns written. The envelope goes to the other region of a case that spans
    two nodes; the event records its jti (the audit link).
    """
    moment = time.time() if now is None else now
    values: dict[str, Any] = dict(changes or {})
    if to_status is not None:
        values["status"] = str(to_status)
        values["status_code"] = PROVINCIAL_CODES[to_status]
    data = dict(event or {})
    if envelope is not None and spans_two_nodes(row):
        other = row.handling_region if row.receiving_region == region else row.receiving_region
        try:
            queued = await outbox.enqueue(
                conn,
                partner=other,
                typ=envelope.typ,
                xt=row.xt_id,
                body=envelope.body,
                blobs=envelope.blobs,
                now=moment,
            )
        except ProtocolError as exc:
            # Input checks should have caught this; never sign what a partner would refuse.
            raise ApiError(400, "invalid_input", f"内容不符合交换规范：{exc.detail}") from exc
        data["envelope"] = {"typ": envelope.typ, "jti": queued.jti, "seq": queued.seq, "to": other}
    seq = row.event_count + 1
    prev = row.head_hash or GENESIS
    data_text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    fields = hashed_fields(
        case_id=row.id,
        seq=seq,
        at=moment,
        actor=actor,
        action=action,
        from_status=row.status,
        to_status=values.get("status", row.status),
        data=data_text,
    )
    digest = event_hash(prev, fields)
    await conn.execute(
        case_events.insert().values(
            case_id=row.id,
            seq=seq,
            at=moment,
            actor=actor,
            action=action,
            from_status=row.status,
            to_status=values.get("status", row.status),
            data=data_text,
            prev_hash=prev,
            hash=digest,
        )
    )
    values.update(event_count=seq, head_hash=digest, updated_at=moment)
    result = await conn.execute(
        update(cases)
        .where(cases.c.id == row.id, cases.c.event_count == row.event_count)
        .values(**values)
    )
    if result.rowcount != 1:  # pragma: no cover - guarded by the row lock
        raise RuntimeError("case changed concurrently")
    return values


def mask_id_number(value: str) -> str:
    """410***********1234: enough to recognise, not enough to misuse."""
    if len(value) <= 8:
        return value[:1] + "*" * max(0, len(value) - 2) + value[-1:]
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:] if len(value) >= 7 else "****"


def summary(row: Row[Any], today: date) -> dict[str, Any]:
    """A case as inbox lists show it: personal data masked."""
    paused_since = open_pause(row.pauses) if row.paused else None
    status = Status(row.status)
    clock_runs = row.deadline is not None and status in {
        Status.ACCEPTED,
        Status.SUPPLEMENT_PENDING,
        Status.INSPECTION,
    }
    ts = (
        time_status(
            deadline=row.deadline,
            warning_from=row.warning_from,
            paused_since=paused_since,
            today=today,
        )
        if clock_runs
        else None
    )
    return {
        "id": row.id,
        "case_no": row.case_no,
        "xt_id": row.xt_id,
        "status": row.status,
        "status_label": STATUS_LABELS[status],
        "status_code": row.status_code,
        "mode": row.mode,
        "item_code": row.item_code,
        "item_name": row.item_name,
        "receiving_region": row.receiving_region,
        "handling_region": row.handling_region,
        "applicant_name": row.applicant_name,
        "applicant_id_number": mask_id_number(row.applicant_id_number),
        "received_at": row.received_at,
        "promised_date": row.promised_date,
        "deadline": row.deadline,
        "deadline_provisional": bool(row.deadline_provisional),
        "time_status": str(ts) if ts else None,
        "time_status_label": TIME_STATUS_LABELS[ts] if ts else None,
        "paused": bool(row.paused),
        "bundle_id": row.bundle_id,
    }


def detail(row: Row[Any], events: list[Row[Any]], today: date) -> dict[str, Any]:
    """A case with everything staff of its regions may see, and its timeline."""
    out = summary(row, today)
    out["applicant"] = {
        "kind": row.applicant_kind,
        "name": row.applicant_name,
        "id_type": row.applicant_id_type,
        "id_number": row.applicant_id_number,
        "phone": row.applicant_phone,
    }
    out["application"] = json.loads(row.application)
    out["details"] = json.loads(row.details)
    out["pauses"] = json.loads(row.pauses)
    out["accepted_on"] = row.accepted_on
    out["time_limit_days"] = row.time_limit_days
    out["warning_from"] = row.warning_from
    out["rectification_due"] = row.rectification_due
    out["events"] = [
        {
            "seq": e.seq,
            "at": e.at,
            "actor": e.actor,
            "action": e.action,
            "from_status": e.from_status,
            "to_status": e.to_status,
            "data": json.loads(e.data),
        }
        for e in events
    ]
    return out
