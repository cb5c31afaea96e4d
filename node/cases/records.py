"""Reading and writing case rows. ``record`` is the one function that changes a case: it
writes the new state, appends the hash-chained event and queues the envelope for the other
side, all inside the caller's transaction."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases.audit import GENESIS, event_hash, hashed_fields
from node.cases.deadlines import TIME_STATUS_LABELS, catch_up_status, time_status
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import PROVINCIAL_CODES, STATUS_LABELS, Mode, Side, Status, sides_of
from node.cases.models import case_due_counts, case_events, case_status_counts, cases, uploads
from node.cases.personal import masked_id, masked_phone
from node.federation.outbox import Outbox
from node.storage.prepared import Prepared
from node.storage.upserts import conflict_insert
from protocol.errors import ProtocolError


@dataclass(frozen=True)
class Envelope:
    """A message for the other side of the case, sent when the transaction commits."""

    typ: str
    body: dict[str, Any]
    blobs: list[dict[str, Any]] | None = None


#: Built once (a statement made per call costs more than its execution).
_FOR_UPDATE = select(cases).where(cases.c.id == bindparam("id")).with_for_update()
_BY_XT = select(cases).where(cases.c.xt_id == bindparam("xt"))
#: Prepared (node/storage/prepared.py): the applier looks every partner message's case up.
_BY_XT_PREPARED = {
    lock: Prepared(_BY_XT.with_for_update() if lock else _BY_XT, ("xt",)) for lock in (True, False)
}


async def load_for_update(conn: AsyncConnection, case_id: int) -> Row[Any] | None:
    return (await conn.execute(_FOR_UPDATE, {"id": case_id})).first()


async def load_by_xt(conn: AsyncConnection, xt_id: str, *, lock: bool = True) -> Any:
    """The case's row (a named tuple: ``row.status``), or None."""
    return await _BY_XT_PREPARED[lock].first(conn, {"xt": xt_id})


async def upload(conn: AsyncConnection, sha256: str) -> Row[Any] | None:
    """The ``uploads`` row of a stored file (type decided by its bytes, size, name)."""
    return (await conn.execute(select(uploads).where(uploads.c.sha256 == sha256))).first()


async def claim_uploads(conn: AsyncConnection, digests: list[str], now: float) -> None:
    """Mark uploads as used by a case (the janitor keeps them); refuse when one is gone (the
    janitor removed an upload nobody had used for a day)."""
    wanted = sorted(set(digests))
    if not wanted:
        return
    await conn.execute(
        update(uploads)
        .where(uploads.c.sha256.in_(wanted), uploads.c.claimed_at.is_(None))
        .values(claimed_at=now)
    )
    held = (
        await conn.execute(
            select(func.count()).select_from(uploads).where(uploads.c.sha256.in_(wanted))
        )
    ).scalar_one()
    if held != len(wanted):
        raise CaseError(CaseErrorCode.INVALID_INPUT, "文件已过期，请重新上传")


async def blob_refs(conn: AsyncConnection, digests: list[str]) -> list[dict[str, Any]]:
    """Envelope blob references of uploads (type, size and name as we stored them)."""
    if not digests:
        return []
    rows = (await conn.execute(select(uploads).where(uploads.c.sha256.in_(digests)))).all()
    return [
        {"sha256": r.sha256, "size": r.size, "media_type": r.media_type, "name": r.name}
        for r in rows
    ]


async def events(conn: AsyncConnection, case_id: int) -> list[Row[Any]]:
    return list(
        (
            await conn.execute(
                select(case_events)
                .where(case_events.c.case_id == case_id)
                .order_by(case_events.c.seq)
            )
        ).all()
    )


def sides(row: Row[Any], region: str) -> frozenset[Side]:
    return sides_of(Mode(row.mode), row.receiving_region, row.handling_region, region)


def spans_two_nodes(row: Row[Any]) -> bool:
    return bool(row.receiving_region != row.handling_region and row.mode != Mode.ONLINE)


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
    actor_name: str | None = None,
) -> dict[str, Any]:
    """Apply one change to case ``row``: columns, event, chain head, outgoing envelope, and
    the maintained status counts.

    Returns the columns written. The envelope goes to the other region of a case that spans
    two nodes; the event records its jti (the audit link). ``actor_name`` is the display name
    of the staff member (``actor`` is the login name, kept for accountability); it is stored
    in the event as ``by`` for people to read.
    """
    moment = time.time() if now is None else now
    values: dict[str, Any] = dict(changes or {})
    if to_status is not None:
        values["status"] = str(to_status)
        values["status_code"] = PROVINCIAL_CODES[to_status]
    data = dict(event or {})
    if actor_name and "by" not in data:
        data["by"] = actor_name
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
                # Signed at the wall-clock time: the case's clock (``now``, which tests and
                # replays set) dates the event, never the envelope's iat/exp.
                now=None,
            )
        except ProtocolError as exc:
            # Input checks should have caught this; never sign what a partner would refuse.
            raise CaseError(
                CaseErrorCode.INVALID_INPUT, f"内容不符合交换规范：{exc.detail}"
            ) from exc
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
    new_status = values.get("status", row.status)
    if row.event_count == 0:  # the case's first event: it was inserted just now
        await count_status(conn, row.partner_region, {new_status: 1})
    elif new_status != row.status:
        await count_status(conn, row.partner_region, {row.status: -1, new_status: 1})
    await count_due(
        conn,
        row.partner_region,
        None
        if row.event_count == 0
        else due_key(row.status, row.deadline, row.warning_from, row.paused_since),
        due_key(
            new_status,
            values.get("deadline", row.deadline),
            values.get("warning_from", row.warning_from),
            values.get("paused_since", row.paused_since),
        ),
    )
    return values


#: The states whose clock runs (time status normal / warning / overdue).
CLOCKED = frozenset({Status.ACCEPTED, Status.SUPPLEMENT_PENDING, Status.INSPECTION})


DueKey = tuple[str, str, str]


def due_key(
    status: str, deadline: str | None, warning_from: str | None, paused_since: str | None
) -> DueKey | None:
    """The ``case_due_counts`` key of a case (deadline, warning date, pause start; "" for a
    missing one), None when its clock does not run."""
    if Status(status) not in CLOCKED or deadline is None:
        return None
    return (deadline, warning_from or "", paused_since or "")


async def count_due(
    conn: AsyncConnection,
    partner: str,
    old: DueKey | None,
    new: DueKey | None,
) -> None:
    """Move one case from ``old`` to ``new`` in ``case_due_counts`` (keys in sorted order)."""
    if old == new:
        return
    deltas = {k: d for k, d in ((old, -1), (new, 1)) if k is not None}
    insert = conflict_insert(conn.dialect.name)
    for (deadline, warning_from, paused_since), delta in sorted(deltas.items()):
        statement = insert(case_due_counts).values(
            partner_region=partner,
            deadline=deadline,
            warning_from=warning_from,
            paused_since=paused_since,
            count=delta,
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[
                    case_due_counts.c.partner_region,
                    case_due_counts.c.deadline,
                    case_due_counts.c.warning_from,
                    case_due_counts.c.paused_since,
                ],
                set_={"count": case_due_counts.c.count + statement.excluded.count},
            )
        )


async def count_status(conn: AsyncConnection, partner: str, deltas: dict[str, int]) -> None:
    """Add ``deltas`` to the maintained counts of ``partner``'s cases by status, in status
    order (two transactions lock the same counter rows in the same order: no deadlock)."""
    insert = conflict_insert(conn.dialect.name)
    for status in sorted(deltas):
        statement = insert(case_status_counts).values(
            partner_region=partner, status=status, count=deltas[status]
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[case_status_counts.c.partner_region, case_status_counts.c.status],
                set_={"count": case_status_counts.c.count + statement.excluded.count},
            )
        )


def summary(row: Row[Any], today: date) -> dict[str, Any]:
    """A case as inbox lists show it: personal data masked."""
    paused_since = row.paused_since if row.paused else None
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
        "applicant_id_number": masked_id(row),
        "received_at": row.received_at,
        "promised_date": row.promised_date,
        "deadline": row.deadline,
        "deadline_provisional": bool(row.deadline_provisional),
        "time_status": str(ts) if ts else None,
        "time_status_label": TIME_STATUS_LABELS[ts] if ts else None,
        "paused": bool(row.paused),
        # The day the pause in progress began: time_status is judged as of it.
        "paused_since": paused_since,
        "bundle_id": row.bundle_id,
        **deferred_summary(row, today),
    }


def deferred_summary(row: Row[Any], today: date) -> dict[str, Any]:
    """容缺 catch-up: its deadline and time status while deferred materials are outstanding."""
    status = catch_up_status(
        deferred_until=row.deferred_until,
        deferred_warning_from=row.deferred_warning_from,
        today=today,
    )
    return {
        "deferred_until": row.deferred_until,
        # Counted partly on weekends alone (a year the calendar does not cover yet).
        "deferred_provisional": bool(row.deferred_until and row.deferred_provisional),
        "deferred_status": str(status) if status else None,
        "deferred_status_label": TIME_STATUS_LABELS[status] if status else None,
    }


def detail(
    row: Row[Any],
    events: list[Row[Any]],
    today: date,
    rating_rows: list[Row[Any]] | None = None,
) -> dict[str, Any]:
    """A case with everything staff of its regions may see, its ratings and its timeline."""
    out = summary(row, today)
    out["applicant"] = {
        "kind": row.applicant_kind,
        "name": row.applicant_name,
        "id_type": row.applicant_id_type,
        # Masked: the full values only through the recorded ``reveal`` action.
        "id_number": masked_id(row),
        "phone": masked_phone(row),
    }
    out["application"] = json.loads(row.application)
    out["details"] = json.loads(row.details)
    out["pauses"] = json.loads(row.pauses)
    out["accepted_on"] = row.accepted_on
    out["time_limit_days"] = row.time_limit_days
    out["warning_from"] = row.warning_from
    out["warning_days"] = row.warning_days
    out["rectification_due"] = row.rectification_due
    out["deferred"] = deferred_detail(out["application"], out["details"])
    out["pledged"] = [
        {"code": m.get("code"), "name": m.get("name")}
        for m in out["application"].get("materials", [])
        if m.get("status") == "pledged"
    ]
    out["ratings"] = [rating_json(r, today) for r in rating_rows or []]
    out["events"] = [event_json(e) for e in events]
    return out


def rating_json(r: Row[Any], today: date) -> dict[str, Any]:
    """A 好差评 rating of the case, with its 整改 rectification while one is due."""
    open_ = r.level <= 2 and r.rectified_at is None
    return {
        "rating_id": r.rating_id,
        "level": r.level,
        "stage": r.stage,
        "channel": r.channel,
        "comment": r.comment,
        "real_name": bool(r.real_name),
        "rated_at": r.rated_at,
        "rectification_due": r.rectification_due,
        "rectification_provisional": bool(r.rectification_provisional),
        "rectified_at": r.rectified_at,
        "rectification": r.rectification,
        "follow_up": json.loads(r.follow_up) if r.follow_up else None,
        "open": open_,
        "overdue": bool(open_ and r.rectification_due and r.rectification_due < today.isoformat()),
    }


def event_json(e: Row[Any]) -> dict[str, Any]:
    data = json.loads(e.data)
    return {
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        # The person's display name where one was recorded (staff of either node).
        "actor_name": data.get("by") if isinstance(data.get("by"), str) else None,
        "action": e.action,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "data": data,
    }


def deferred_detail(application: dict[str, Any], details: dict[str, Any]) -> list[dict[str, Any]]:
    """Every 容缺 material of the case: whether it is in, and when it must be or was."""
    caught = details.get("deferred", {}).get("materials", {})
    out = []
    for material in application.get("materials", []):
        if material.get("status") != "deferred":
            continue
        got = caught.get(material.get("code"))
        out.append(
            {
                "code": material.get("code"),
                "name": material.get("name"),
                "deferred_until": material.get("deferred_until"),
                "caught_up": got is not None,
                "blob": got.get("blob") if got else None,
                "caught_up_on": got.get("on") if got else None,
            }
        )
    return out
