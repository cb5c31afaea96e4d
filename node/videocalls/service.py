"""The only code that changes 视频办 rows: calls, callbacks, duty, ratings, appointments."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from inspection.models import inspection_items
from node.cases import validation
from node.cases.errors import CaseError
from node.cases.models import uploads
from node.cases.personal import mask_phone
from node.clock import CHINA
from node.storage.database import Database
from node.storage.sealing import SealsValues
from node.storage.upserts import conflict_insert
from node.videocalls.errors import VideoCallError
from node.videocalls.models import video_callbacks, video_calls, video_duty

PHONE_PLACE = "video_calls.phone"
CALLBACK_PHONE_PLACE = "video_callbacks.phone"
#: Mainland mobile numbers, or a landline with its area code (digits and one hyphen).
PHONE_RE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
#: Terminal states of a call.
OVER = ("ended", "left", "expired")
#: 好差评 levels (5 best), the same scale as a case's rating.
LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
RATING_CHANNEL = "video"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Request:
    """What a citizen asks for when starting a call (checked)."""

    item_code: str | None
    topic: str | None
    phone: str | None
    consent: bool


def _invalid(errors: validation.Errors) -> None:
    try:
        errors.raise_if_any()
    except CaseError as exc:
        raise VideoCallError("invalid_input", fields=exc.fields) from None


def _phone(data: dict[str, Any], errors: validation.Errors, *, required: bool) -> str | None:
    phone = validation.text(data, "phone", errors, label="联系电话", max_len=20, required=required)
    if phone is not None and not PHONE_RE.match(phone):
        errors.add("phone", "invalid_phone", "请填写有效的手机号码或带区号的固定电话")
        return None
    return phone


def _item(data: dict[str, Any], errors: validation.Errors) -> str | None:
    code = validation.text(data, "item_code", errors, label="事项编码", max_len=40, required=False)
    if code is not None and not re.fullmatch(r"[0-9A-Za-z-]{1,40}", code):
        errors.add("item_code", "invalid_item", "事项编码有误")
        return None
    return code


def check_request(data: Any) -> Request:
    if not isinstance(data, dict):
        raise VideoCallError("invalid_input")
    errors = validation.Errors()
    topic = validation.text(data, "topic", errors, label="咨询内容", max_len=200, required=False)
    phone = _phone(data, errors, required=False)
    item = _item(data, errors)
    consent = data.get("consent", False)
    if not isinstance(consent, bool):
        errors.add("consent", "invalid_type", "是否同意录音录像应为是或否")
    _invalid(errors)
    return Request(item, topic, phone, bool(consent))


async def create_call(
    db: Database, sealer: SealsValues, asked: Request, *, now: float | None = None
) -> tuple[str, str]:
    """A new waiting call: its id and the citizen's key (only its hash is kept)."""
    call_id = str(uuid.uuid4())
    key = secrets.token_urlsafe(24)
    async with db.write() as conn:
        await conn.execute(
            video_calls.insert().values(
                id=call_id,
                status="waiting",
                created_at=time.time() if now is None else now,
                key_hash=key_hash(key),
                item_code=asked.item_code,
                topic=asked.topic,
                phone=sealer.seal(asked.phone, PHONE_PLACE) if asked.phone else None,
                phone_masked=mask_phone(asked.phone) if asked.phone else None,
                consent=asked.consent,
            )
        )
    return call_id, key


async def get_call(db: Database, call_id: str) -> Any:
    if not isinstance(call_id, str) or len(call_id) != 36:
        raise VideoCallError("call_not_found")
    async with db.read() as conn:
        row = (await conn.execute(select(video_calls).where(video_calls.c.id == call_id))).first()
    if row is None:
        raise VideoCallError("call_not_found")
    return row


def check_key(row: Any, key: Any) -> None:
    if not isinstance(key, str) or len(key) > 100:
        raise VideoCallError("call_key_invalid")
    if not secrets.compare_digest(row.key_hash, key_hash(key)):
        raise VideoCallError("call_key_invalid")


async def set_status(db: Database, call_id: str, *, frm: tuple[str, ...], **values: Any) -> bool:
    """Move a call on if it is in one of ``frm`` (one conditional UPDATE: two clerks picking
    the same call, or a pick racing the citizen's leaving, have one winner)."""
    async with db.write() as conn:
        done = await conn.execute(
            update(video_calls)
            .where(video_calls.c.id == call_id, video_calls.c.status.in_(frm))
            .values(**values)
        )
    return bool(done.rowcount == 1)


async def expire_leftovers(db: Database, *, now: float) -> None:
    """Calls waiting or active when the node stopped: nobody holds their sockets any more."""
    async with db.write() as conn:
        await conn.execute(
            update(video_calls)
            .where(video_calls.c.status == "waiting")
            .values(status="expired", ended_at=now, end_reason="node_restart")
        )
        await conn.execute(
            update(video_calls)
            .where(video_calls.c.status == "active")
            .values(status="ended", ended_at=now, end_reason="node_restart")
        )


async def recent_handling(db: Database, *, limit: int = 20) -> float | None:
    """Mean seconds from pick-up to end of the last ``limit`` answered calls."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(video_calls.c.picked_at, video_calls.c.ended_at)
                .where(
                    video_calls.c.status == "ended",
                    video_calls.c.picked_at.is_not(None),
                    video_calls.c.ended_at.is_not(None),
                )
                .order_by(video_calls.c.ended_at.desc())
                .limit(limit)
            )
        ).all()
    spans = [r.ended_at - r.picked_at for r in rows if r.ended_at >= r.picked_at]
    return sum(spans) / len(spans) if spans else None


# -- rating ----------------------------------------------------------------------------------


def check_rating(data: Any) -> tuple[int, str | None]:
    """Level and comment, by the case domain's field checks and its rule: 1 or 2 needs a
    comment (node/cases/actions/rating.py)."""
    if not isinstance(data, dict):
        raise VideoCallError("invalid_input")
    errors = validation.Errors()
    level = validation.integer(data, "level", errors, label="评价等级", minimum=1, maximum=5)
    comment = validation.text(
        data, "comment", errors, label="评价内容", max_len=1000, required=False
    )
    if level is not None and level <= 2 and not comment:
        errors.add("comment", "required", "差评请填写具体意见，便于整改")
    _invalid(errors)
    assert level is not None
    return level, comment


async def rate(db: Database, row: Any, data: Any) -> dict[str, Any]:
    if row.status != "ended" or row.picked_at is None:
        raise VideoCallError("not_ended")
    if row.rated_at is not None:
        raise VideoCallError("already_rated")
    level, comment = check_rating(data)
    now = time.time()
    async with db.write() as conn:
        done = await conn.execute(
            update(video_calls)
            .where(video_calls.c.id == row.id, video_calls.c.rated_at.is_(None))
            .values(
                rating_level=level,
                rating_comment=comment,
                rating_channel=RATING_CHANNEL,
                rated_at=now,
            )
        )
    if done.rowcount != 1:
        raise VideoCallError("already_rated")
    return {"level": level, "label": LEVELS[level], "comment": comment, "channel": "video"}


# -- callbacks -------------------------------------------------------------------------------


async def request_callback(db: Database, sealer: SealsValues, data: Any) -> int:
    if not isinstance(data, dict):
        raise VideoCallError("invalid_input")
    errors = validation.Errors()
    phone = _phone(data, errors, required=True)
    topic = validation.text(data, "topic", errors, label="咨询内容", max_len=200, required=False)
    item = _item(data, errors)
    _invalid(errors)
    assert phone is not None
    async with db.write() as conn:
        result = await conn.execute(
            video_callbacks.insert().values(
                created_at=time.time(),
                phone=sealer.seal(phone, CALLBACK_PHONE_PLACE),
                phone_masked=mask_phone(phone),
                item_code=item,
                topic=topic,
                status="open",
            )
        )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def open_callbacks(db: Database, *, limit: int = 200) -> list[dict[str, Any]]:
    """The open callback requests, oldest first, with the phone masked."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(
                    video_callbacks.c.id,
                    video_callbacks.c.created_at,
                    video_callbacks.c.phone_masked,
                    video_callbacks.c.item_code,
                    video_callbacks.c.topic,
                )
                .where(video_callbacks.c.status == "open")
                .order_by(video_callbacks.c.created_at)
                .limit(limit)
            )
        ).all()
    return [dict(r._mapping) for r in rows]


async def count_open_callbacks(db: Database) -> int:
    async with db.read() as conn:
        count = (
            await conn.execute(
                select(func.count())
                .select_from(video_callbacks)
                .where(video_callbacks.c.status == "open")
            )
        ).scalar()
    return int(count or 0)


async def take_callback(
    db: Database, sealer: SealsValues, callback_id: int, username: str
) -> dict[str, Any]:
    """A staff member takes an open callback: it is theirs (``done``, who and when) and they
    get the phone in full; nobody else gets it afterwards."""
    now = time.time()
    async with db.write() as conn:
        taken = await conn.execute(
            update(video_callbacks)
            .where(video_callbacks.c.id == callback_id, video_callbacks.c.status == "open")
            .values(status="done", handled_by=username, handled_at=now)
        )
        row = (
            await conn.execute(select(video_callbacks).where(video_callbacks.c.id == callback_id))
        ).first()
    if row is None:
        raise VideoCallError("callback_not_found")
    if taken.rowcount != 1:
        raise VideoCallError("callback_taken")
    return {
        "id": row.id,
        "phone": sealer.open(row.phone, CALLBACK_PHONE_PLACE),
        "topic": row.topic,
        "item_code": row.item_code,
        "handled_at": now,
    }


# -- duty --------------------------------------------------------------------------------------


async def on_duty(db: Database, username: str) -> bool:
    async with db.read() as conn:
        value = (
            await conn.execute(
                select(video_duty.c.on_duty).where(video_duty.c.username == username)
            )
        ).scalar()
    return bool(value)


async def set_duty(db: Database, username: str, on: bool) -> None:
    insert = conflict_insert(db.engine.dialect.name)(video_duty)
    statement = insert.values(username=username, on_duty=on, changed_at=time.time())
    async with db.write() as conn:
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[video_duty.c.username],
                set_={"on_duty": on, "changed_at": time.time()},
            )
        )


# -- appointment -------------------------------------------------------------------------------


def check_appointment(data: Any, *, now: float) -> tuple[str, str | None]:
    """A slot at the window: ``at`` as ``YYYY-MM-DDTHH:MM`` China time, in the future, within
    60 days; a note."""
    if not isinstance(data, dict):
        raise VideoCallError("invalid_input")
    errors = validation.Errors()
    at = validation.text(data, "at", errors, label="预约时间", max_len=16)
    note = validation.text(data, "note", errors, label="预约事项", max_len=200, required=False)
    if at is not None:
        try:
            moment = datetime.strptime(at, "%Y-%m-%dT%H:%M").replace(tzinfo=CHINA)
        except ValueError:
            errors.add("at", "invalid_datetime", "预约时间格式应为 2026-12-05T09:30")
        else:
            if not now < moment.timestamp() <= now + 60 * 86400:
                errors.add("at", "out_of_range", "预约时间应在今后 60 天内")
    _invalid(errors)
    assert at is not None
    return at, note


async def book_appointment(db: Database, call_id: str, at: str, note: str | None) -> None:
    """Record the slot booked during a call (answered, in progress or ended)."""
    await set_status(db, call_id, frm=("active", "ended"), appointment_at=at, appointment_note=note)


# -- snapshots, and 视频收件: the call's snapshots as uploads of a window application ------------


async def snapshots(db: Database, call_id: str) -> list[dict[str, Any]]:
    """The call's snapshots, oldest first (``inspection_items`` rows under the call's id)."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(inspection_items)
                .where(
                    inspection_items.c.session_id == call_id,
                    inspection_items.c.kind == "snapshot",
                )
                .order_by(inspection_items.c.id)
            )
        ).all()
    return [
        {
            "sha256": r.sha256,
            "name": r.name,
            "size": r.size,
            "media_type": r.media_type,
            "taken_at": r.taken_at,
            "data": json.loads(r.data or "{}"),
        }
        for r in rows
    ]


async def offer_uploads(
    db: Database, call_id: str, shots: list[dict[str, Any]], *, by: str, item_code: str
) -> None:
    """List the call's snapshots as uploads (the window's application form takes only
    uploaded files); the janitor leaves their blobs alone (inspection_items holds them)."""
    now = time.time()
    async with db.write() as conn:
        known = set(
            (
                await conn.execute(
                    select(uploads.c.sha256).where(
                        uploads.c.sha256.in_([s["sha256"] for s in shots])
                    )
                )
            ).scalars()
        )
        for shot in shots:
            if shot["sha256"] in known:
                continue
            await conn.execute(
                uploads.insert().values(
                    sha256=shot["sha256"],
                    media_type=shot["media_type"],
                    size=shot["size"],
                    name=shot["name"],
                    uploaded_at=now,
                    uploaded_by=by,
                )
            )
        await conn.execute(
            update(video_calls)
            .where(video_calls.c.id == call_id)
            .values(application_item=item_code, application_at=now)
        )


async def call_uploads(db: Database, call_id: str, username: str) -> list[dict[str, Any]]:
    """The snapshots a clerk offered to the window from their call (none for anyone else)."""
    if len(call_id) != 36:
        return []
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(video_calls.c.clerk, video_calls.c.application_at).where(
                    video_calls.c.id == call_id
                )
            )
        ).first()
        if row is None or row.clerk != username or row.application_at is None:
            return []
        shots = (
            await conn.execute(
                select(uploads.c.sha256, uploads.c.name, uploads.c.size)
                .join(inspection_items, inspection_items.c.sha256 == uploads.c.sha256)
                .where(
                    inspection_items.c.session_id == call_id,
                    inspection_items.c.kind == "snapshot",
                )
                .order_by(inspection_items.c.id)
            )
        ).all()
    return [{"sha256": s.sha256, "name": s.name, "size": s.size} for s in shots]
