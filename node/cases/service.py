"""The case service: one function per action, each the only way that action changes a case.

Staff actions come from the API (``act``); the other side's messages come from the
federation applier (``apply_envelope``). Both end in ``records.record``, which writes the
state, the hash-chained event and the outgoing envelope in the caller's transaction.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from node.accounts.auth import Staff
from node.cases import deadlines, records, validation
from node.cases.deadlines import (
    DEFAULT_DEFERRED_DAYS,
    DEFAULT_RECTIFICATION_DAYS,
    DEFAULT_WARNING_DAYS,
    Calendar,
    compute,
)
from node.cases.lifecycle import (
    ACTIONS,
    DECIDED,
    OPEN,
    PROVINCIAL_CODES,
    Mode,
    Side,
    Status,
    TransitionError,
    check,
)
from node.cases.models import bundles, case_counters, case_events, cases, ratings, uploads
from node.federation.applier import BusinessRefusal
from node.federation.outbox import Outbox
from node.http_errors import ApiError
from node.storage.blobs import BlobStore
from node.storage.database import Database
from protocol.catalog import DEFAULT_SUPPLEMENT_DEADLINE_DAYS
from protocol.envelope import Envelope

CHINA = timezone(timedelta(hours=8))

#: The display name (姓名) of the staff member acting in this task, for events and message
#: bodies people read; the login name stays the event's ``actor`` (accountability).
_ACTOR_NAME: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "case_actor_name", default=None
)

ItemLookup = Callable[[str], Awaitable[Any]]
CalendarSource = Callable[[], Awaitable[Calendar]]


def today_in_china(now: float | None = None) -> date:
    return datetime.fromtimestamp(time.time() if now is None else now, CHINA).date()


def query_hash(case_no: str, code: str) -> str:
    return hashlib.sha256(f"{case_no}:{code}".encode()).hexdigest()


@dataclass
class CaseService:
    db: Database
    region: str
    base_url: str
    outbox: Outbox
    blobs: BlobStore
    items: ItemLookup
    calendar: CalendarSource
    #: 差评: working days to rectify (``[cases] rectification_days`` in tongban.toml).
    rectification_days: int = DEFAULT_RECTIFICATION_DAYS
    #: 容缺: working days from 收件 to hand in deferred materials (``[cases] deferred_days``).
    deferred_days: int = DEFAULT_DEFERRED_DAYS
    #: The window named in case.submit's ``received_by``.
    window_name: str = "跨域通办窗口"
    clock: Callable[[], float] = time.time

    @staticmethod
    def display_name(actor: str) -> str:
        """The display name of the staff member acting now (the login name if none is set)."""
        return _ACTOR_NAME.get() or actor

    # -- creating cases --------------------------------------------------------------------

    async def receive_application(self, staff: Staff, payload: Any) -> dict[str, Any]:
        """A window clerk takes an application (异地代收代办, or 全程网办 on our own item).

        Returns the case and the query code to print on the 收件凭证 (shown once).
        """
        validated = await self._validate_application(payload, parts=None)
        item = validated["items"][0]
        mode = Mode(validated["mode"])
        if mode is Mode.JOINT:
            raise ApiError(
                400,
                "invalid_input",
                "多地联办请使用联办申请",
                [
                    validation.field_error(
                        "mode", "invalid_choice", "多地联办请通过 /api/v1/bundles 提交"
                    )
                ],
            )
        token = _ACTOR_NAME.set(staff.display_name)
        try:
            async with self.db.write() as conn:
                case, code = await self._create_case(
                    conn,
                    staff.username,
                    validated,
                    item,
                    part_materials=validated["materials"][0],
                    form=validated["forms"][0],
                )
        finally:
            _ACTOR_NAME.reset(token)
        return {"case": case, "query_code": code}

    async def receive_online(self, payload: Any) -> dict[str, Any]:
        """全程网办: the applicant applies on this (the handling) region's public page.

        Identity is verified online by the provincial platform before the page is reached, so
        no window check applies; the approver sees ``identity_verified`` as sent.
        """
        if isinstance(payload, dict):
            payload = {**payload, "mode": "online", "identity_verified": True}
        validated = await self._validate_application(payload, parts=None)
        async with self.db.write() as conn:
            case, code = await self._create_case(
                conn,
                "citizen",
                validated,
                validated["items"][0],
                part_materials=validated["materials"][0],
                form=validated["forms"][0],
            )
        return {"case": case, "query_code": code}

    async def receive_bundle(self, staff: Staff, payload: Any) -> dict[str, Any]:
        """多地联办: one application, one window; one case per handling region."""
        validated = await self._validate_application(payload, parts=True)
        now = self.clock()
        token = _ACTOR_NAME.set(staff.display_name)
        try:
            return await self._store_bundle(staff, validated, now)
        finally:
            _ACTOR_NAME.reset(token)

    async def _store_bundle(
        self, staff: Staff, validated: dict[str, Any], now: float
    ) -> dict[str, Any]:
        async with self.db.write() as conn:
            bundle_no = await self._next_case_no(conn, now)
            bundle_id = (
                await conn.execute(
                    bundles.insert()
                    .values(bundle_no=bundle_no, name=validated["name"], created_at=now)
                    .returning(bundles.c.id)
                )
            ).scalar_one()
            code = f"{secrets.randbelow(10**6):06d}"
            parts = []
            for index, item in enumerate(validated["items"], start=1):
                case, _ = await self._create_case(
                    conn,
                    staff.username,
                    validated,
                    item,
                    part_materials=validated["materials"][index - 1],
                    form=validated["forms"][index - 1],
                    case_no=f"{bundle_no}-{index}",
                    bundle=(bundle_id, bundle_no, index, len(validated["items"])),
                    code=code,
                )
                parts.append(case)
            await conn.execute(
                update(bundles).where(bundles.c.id == bundle_id).values(name=validated["name"])
            )
        return {
            "bundle": {"id": bundle_id, "bundle_no": bundle_no, "cases": parts},
            "query_code": code,
        }

    async def _validate_application(self, payload: Any, *, parts: bool | None) -> dict[str, Any]:
        errors = validation.Errors()
        if not isinstance(payload, dict):
            raise ApiError(400, "invalid_input", "请求体应为 JSON 对象")
        applicant = validation.applicant(payload.get("applicant"), errors)
        delivery = validation.delivery(payload.get("delivery"), errors)
        verified = payload.get("identity_verified")
        if verified is not True:
            errors.add("identity_verified", "identity_not_verified", "请先核验申请人身份证件原件")
        mode = (
            "joint"
            if parts
            else validation.choice(
                payload,
                "mode",
                {"proxy": "代收代办", "online": "全程网办"},
                errors,
                label="办理模式",
            )
        )
        part_list = payload.get("parts") if parts else [payload]
        name = None
        if parts:
            name = validation.text(payload, "name", errors, label="联办事项名称", max_len=200)
            if not isinstance(part_list, list) or not 2 <= len(part_list) <= 10:
                errors.add("parts", "invalid_parts", "多地联办至少包含 2 个、至多 10 个事项")
                part_list = []
        items, materials, forms = [], [], []
        for index, part in enumerate(part_list or []):
            prefix = f"parts[{index}]." if parts else ""
            if not isinstance(part, dict):
                errors.add(f"{prefix}item_code", "required", "请选择事项")
                continue
            code = part.get("item_code")
            item = await self.items(code) if isinstance(code, str) else None
            if item is None or getattr(item, "retired", False):
                errors.add(f"{prefix}item_code", "unknown_item", "事项不存在或已停用")
                continue
            if mode and mode not in item.modes:
                errors.add(f"{prefix}mode", "mode_not_offered", f"「{item.name}」不支持该办理模式")
            if mode == "online" and item.handling_region != self.region:
                errors.add(f"{prefix}mode", "mode_not_offered", "全程网办只能申请本地区办理的事项")
            if mode == "proxy" and item.handling_region == self.region:
                errors.add(f"{prefix}item_code", "own_item", "本地区事项请直接受理，无需代收代办")
            form = validation.form(item.form_fields, part.get("form"), errors, prefix=prefix)
            items.append(item)
            forms.append(form)
            materials.append(
                await self._check_materials(item, part.get("materials"), errors, prefix)
            )
        if parts and len({i.handling_region for i in items}) < len(items):
            errors.add("parts", "invalid_parts", "同一办理地的事项请合并为一件")
        errors.raise_if_any()
        return {
            "mode": mode,
            "name": name,
            "applicant": applicant,
            "delivery": delivery,
            "items": items,
            "materials": materials,
            "forms": forms,
        }

    async def _check_materials(
        self, item: Any, given: Any, errors: validation.Errors, prefix: str
    ) -> list[dict[str, Any]]:
        if not isinstance(given, list):
            given = []
        by_code = {m.get("code"): m for m in given if isinstance(m, dict)}
        out = []
        for spec in item.materials:
            entry = by_code.pop(spec.code, None)
            field = f"{prefix}materials.{spec.code}"
            status = (entry or {}).get("status", "provided" if entry else None)
            blob = (entry or {}).get("blob")
            if entry is None or status is None:
                if spec.required:
                    errors.add(field, "material_missing", f"缺少必需材料「{spec.name}」")
                continue
            if status == "deferred" and not spec.deferrable:
                errors.add(field, "not_deferrable", f"「{spec.name}」不适用容缺受理")
            elif status == "pledged" and not spec.pledgeable:
                errors.add(field, "not_pledgeable", f"「{spec.name}」不适用告知承诺")
            elif status not in ("provided", "deferred", "pledged"):
                errors.add(field, "invalid_choice", "材料状态应为已提供、容缺或告知承诺")
            elif status == "provided":
                if not isinstance(blob, str) or not validation.SHA256_RE.match(blob):
                    errors.add(field, "file_missing", f"请上传「{spec.name}」")
                else:
                    upload = await self._upload(blob)
                    if upload is None or not await self.blobs.has(blob):
                        errors.add(field, "file_missing", f"「{spec.name}」的文件未上传")
                    elif spec.media_types and upload.media_type not in spec.media_types:
                        errors.add(
                            field,
                            "file_type_not_accepted",
                            f"「{spec.name}」只接受 "
                            f"{'、'.join(_type_names(spec.media_types))} 文件",
                        )
                    elif spec.max_bytes and upload.size > spec.max_bytes:
                        errors.add(
                            field,
                            "file_too_large",
                            f"「{spec.name}」文件不能超过 {spec.max_bytes // (1024 * 1024)} MB",
                        )
            out.append(
                {
                    "code": spec.code,
                    "name": spec.name,
                    "status": status,
                    "blob": blob if status == "provided" else None,
                }
            )
        for code in by_code:
            errors.add(f"{prefix}materials.{code}", "unknown_material", "该事项不需要此材料")
        return out

    async def _upload(self, sha256: str) -> Row[Any] | None:
        async with self.db.read() as conn:
            return (await conn.execute(select(uploads).where(uploads.c.sha256 == sha256))).first()

    async def _blob_refs(self, conn: AsyncConnection, digests: list[str]) -> list[dict[str, Any]]:
        if not digests:
            return []
        rows = (await conn.execute(select(uploads).where(uploads.c.sha256.in_(digests)))).all()
        return [
            {"sha256": r.sha256, "size": r.size, "media_type": r.media_type, "name": r.name}
            for r in rows
        ]

    async def _next_case_no(self, conn: AsyncConnection, now: float) -> str:
        day = today_in_china(now).strftime("%Y%m%d")
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        number = (
            await conn.execute(
                insert(case_counters)
                .values(day=day, next_no=2)
                .on_conflict_do_update(
                    index_elements=[case_counters.c.day],
                    set_={"next_no": case_counters.c.next_no + 1},
                )
                .returning(case_counters.c.next_no)
            )
        ).scalar_one() - 1
        return f"{self.region}-{day}-{number:05d}"

    async def _create_case(
        self,
        conn: AsyncConnection,
        actor: str,
        validated: dict[str, Any],
        item: Any,
        *,
        part_materials: list[dict[str, Any]],
        form: dict[str, Any],
        case_no: str | None = None,
        bundle: tuple[int, str, int, int] | None = None,
        code: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        now = self.clock()
        mode = Mode(validated["mode"])
        case_no = case_no or await self._next_case_no(conn, now)
        code = code or f"{secrets.randbelow(10**6):06d}"
        applicant = validated["applicant"]
        received_at = datetime.fromtimestamp(now, CHINA).isoformat(timespec="seconds")
        catch_up = await self._catch_up_dates(item, now, part_materials)
        deferred_until = catch_up["deferred_until"]
        application = {
            "form": form,
            "materials": part_materials,
            "delivery": validated["delivery"],
            "identity_verified": True,
            "received_at": received_at,
        }
        if bundle is not None:
            application["bundle"] = {
                "bundle_no": bundle[1],
                "part": bundle[2],
                "parts": bundle[3],
                "name": validated["name"],
            }
        handling = item.handling_region
        online = mode is Mode.ONLINE
        row_id = (
            await conn.execute(
                cases.insert()
                .values(
                    case_no=case_no,
                    xt_id=f"XT-{self.region}-{uuid.uuid4().hex[:20]}",
                    mode=str(mode),
                    item_code=item.code,
                    item_name=item.name,
                    receiving_region=self.region,
                    handling_region=handling,
                    partner_region=handling,
                    status=str(Status.RECEIVED),
                    status_code=PROVINCIAL_CODES[Status.RECEIVED],
                    bundle_id=bundle[0] if bundle else None,
                    applicant_kind=applicant["kind"],
                    applicant_name=applicant["name"],
                    applicant_id_type=applicant["id_type"],
                    applicant_id_number=applicant["id_number"],
                    applicant_phone=applicant["phone"],
                    query_hash=query_hash(case_no, code),
                    application=json.dumps(application, ensure_ascii=False),
                    details="{}",
                    **catch_up,
                    received_at=now,
                    pauses="[]",
                    paused=False,
                    deadline_provisional=False,
                    created_at=now,
                    updated_at=now,
                    event_count=0,
                    head_hash="",
                )
                .returning(cases.c.id)
            )
        ).scalar_one()
        row = await records.load_for_update(conn, row_id)
        assert row is not None
        deferred = [m["name"] for m in part_materials if m["status"] == "deferred"]
        pledged = [m["name"] for m in part_materials if m["status"] == "pledged"]
        event = _clean(
            {
                "materials": len(part_materials),
                "deferred": deferred,
                "deferred_until": deferred_until,
                "pledged": pledged or None,
            }
        )
        name = _ACTOR_NAME.get()
        if online:
            await records.record(
                conn,
                row,
                region=self.region,
                outbox=self.outbox,
                actor=actor,
                action="receive",
                event=event,
                now=now,
                actor_name=name,
            )
        else:
            body = {
                "case_no": case_no,
                "item_code": item.code,
                "mode": str(mode),
                "applicant": applicant,
                **{k: v for k, v in application.items()},
            }
            if name:
                body["received_by"] = {"window": self.window_name, "clerk": name}
            digests = [m["blob"] for m in part_materials if m["blob"]]
            await records.record(
                conn,
                row,
                region=self.region,
                outbox=self.outbox,
                actor=actor,
                action="submit",
                to_status=Status.FORWARDED,
                event=event,
                envelope=records.Envelope(
                    "case.submit", body, await self._blob_refs(conn, digests)
                ),
                now=now,
                actor_name=name,
            )
        fresh = await records.load_for_update(conn, row_id)
        assert fresh is not None
        return records.summary(fresh, today_in_china(now)), code

    async def _catch_up_dates(
        self, item: Any, now: float, materials: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """容缺: the catch-up deadline (``deferred_days`` working days after 收件), the day its
        warning starts and the inputs a calendar load recomputes them from, as columns; the
        deadline is set on every deferred material. All None without any."""
        deferred = [m for m in materials if m["status"] == "deferred"]
        if not deferred:
            return {"deferred_until": None, "deferred_warning_from": None, "deferred_days": None}
        fields = deadlines.catch_up(
            await self.calendar(),
            start=today_in_china(now),
            days=self.deferred_days,
            warning_days=int(getattr(item, "warning_days", DEFAULT_WARNING_DAYS)),
        )
        for material in deferred:
            material["deferred_until"] = fields["deferred_until"]
        return fields

    # -- staff actions ---------------------------------------------------------------------

    async def act(
        self, staff: Staff, case_id: int, action_name: str, payload: Any
    ) -> dict[str, Any]:
        action = ACTIONS.get(action_name)
        if action is None or action_name == "submit":
            raise ApiError(404, "unknown_action", "没有这个办理操作")
        if not isinstance(payload, dict):
            raise ApiError(400, "invalid_input", "请求体应为 JSON 对象")
        token = _ACTOR_NAME.set(staff.display_name)
        try:
            return await self._act(staff, case_id, action_name, action, payload)
        finally:
            _ACTOR_NAME.reset(token)

    async def _act(
        self, staff: Staff, case_id: int, action_name: str, action: Any, payload: dict[str, Any]
    ) -> dict[str, Any]:
        async with self.db.write() as conn:
            row = await records.load_for_update(conn, case_id)
            if row is None or staff.region != self.region:
                raise ApiError(404, "case_not_found", "案件不存在")
            try:
                check(
                    action,
                    state=Status(row.status),
                    role=staff.role,
                    sides=records.sides(row, self.region),
                )
            except TransitionError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from exc
            handler = getattr(self, f"_do_{action_name}")
            await handler(conn, row, staff.username, payload)
            fresh = await records.load_for_update(conn, case_id)
            assert fresh is not None
            events = await _events(conn, case_id)
            rated = await _ratings(conn, case_id)
        return records.detail(fresh, events, today_in_china(self.clock()), rated)

    async def _write(
        self, conn: AsyncConnection, row: Row[Any], actor: str, action: str, **kwargs: Any
    ) -> None:
        await records.record(
            conn,
            row,
            region=self.region,
            outbox=self.outbox,
            actor=actor,
            action=action,
            now=self.clock(),
            actor_name=_ACTOR_NAME.get(),
            **kwargs,
        )

    async def _item(self, row: Row[Any]) -> Any:
        item = await self.items(row.item_code)
        if item is None:
            raise ApiError(409, "item_unavailable", "事项已停用，请联系管理员")
        return item

    async def _do_accept(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        item = await self._item(row)
        accepted_on = today_in_china(self.clock())
        limit = int(item.promised_limit_days)
        warning_days = int(item.warning_days)
        fields = compute(
            await self.calendar(),
            accepted_on=accepted_on,
            limit_days=limit,
            pauses=json.loads(row.pauses),
            warning_days=warning_days,
        )
        note = _optional_text(payload, "note", "受理意见", 500)
        await self._write(
            conn,
            row,
            actor,
            "accept",
            to_status=Status.ACCEPTED,
            changes={
                "accepted_on": accepted_on.isoformat(),
                "time_limit_days": limit,
                "warning_days": warning_days,
                **fields.as_columns(),
            },
            event={"promised_date": fields.promised_date, "provisional": fields.provisional},
            envelope=records.Envelope(
                "case.accepted",
                _clean(
                    {
                        "accepted_on": accepted_on.isoformat(),
                        "time_limit_days": limit,
                        "promised_date": fields.promised_date,
                        "provisional": fields.provisional,
                        "warning_days": warning_days,
                        "approver": self.display_name(actor),
                        "note": note,
                    }
                ),
            ),
        )

    async def _do_not_accept(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        errors = validation.Errors()
        reason = validation.text(payload, "reason", errors, label="不予受理理由", max_len=1000)
        basis = validation.text(
            payload, "legal_basis", errors, label="法律依据", max_len=500, required=False
        )
        errors.raise_if_any()
        await self._write(
            conn,
            row,
            actor,
            "not_accept",
            to_status=Status.NOT_ACCEPTED,
            changes=self._close_pause(row),
            event={"reason": reason},
            envelope=records.Envelope(
                "case.not_accepted",
                _clean(
                    {"reason": reason, "legal_basis": basis, "approver": self.display_name(actor)}
                ),
            ),
        )

    async def _do_request_supplement(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        errors = validation.Errors()
        items = payload.get("items")
        notice: list[dict[str, Any]] = []
        if not isinstance(items, list) or not items:
            errors.add("items", "required", "补正通知应一次列明全部需补正的材料")
        else:
            for index, entry in enumerate(items[:50]):
                entry = entry if isinstance(entry, dict) else {}
                name = validation.text(
                    entry, "name", errors, label="材料名称", path=f"items[{index}].name"
                )
                requirement = validation.text(
                    entry,
                    "requirement",
                    errors,
                    label="补正要求",
                    max_len=500,
                    path=f"items[{index}].requirement",
                )
                code = entry.get("material_code")
                notice.append(
                    _clean(
                        {
                            "material_code": code if isinstance(code, str) else None,
                            "name": name,
                            "requirement": requirement,
                        }
                    )
                )
        item = await self._item(row)
        days = int(
            getattr(item, "supplement_deadline_days", DEFAULT_SUPPLEMENT_DEADLINE_DAYS)
            or DEFAULT_SUPPLEMENT_DEADLINE_DAYS
        )
        today = today_in_china(self.clock())
        deadline = validation.iso_date(payload, "deadline", errors, label="补正期限")
        if deadline is not None and deadline <= today:
            errors.add("deadline", "deadline_not_after_today", "补正期限应晚于今天")
        errors.raise_if_any()
        if deadline is None:
            deadline = (await self.calendar()).add_working_days(today, days).date
        details = _new_supplement(
            json.loads(row.details),
            {
                "items": notice,
                "deadline": deadline.isoformat(),
                "requested_on": today.isoformat(),
                "resume_status": row.status,
            },
        )
        changes: dict[str, Any] = {"details": json.dumps(details, ensure_ascii=False)}
        if row.status == Status.ACCEPTED:
            changes.update(self._open_pause(row, today, "补正"))
        await self._write(
            conn,
            row,
            actor,
            "request_supplement",
            to_status=Status.SUPPLEMENT_PENDING,
            changes=changes,
            event={"items": len(notice), "deadline": deadline.isoformat()},
            envelope=records.Envelope(
                "case.supplement_requested",
                {
                    "items": notice,
                    "deadline": deadline.isoformat(),
                    "requested_on": today.isoformat(),
                    "approver": self.display_name(actor),
                },
            ),
        )

    async def _do_supplement(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        errors = validation.Errors()
        given = payload.get("materials")
        materials = []
        if not isinstance(given, list) or not given:
            errors.add("materials", "required", "请上传补正材料")
        else:
            for index, entry in enumerate(given[:50]):
                entry = entry if isinstance(entry, dict) else {}
                name = validation.text(
                    entry, "name", errors, label="材料名称", path=f"materials[{index}].name"
                )
                blob = entry.get("blob")
                if (
                    not isinstance(blob, str)
                    or not await self.blobs.has(blob)
                    or await self._upload(blob) is None
                ):
                    errors.add(f"materials[{index}].blob", "file_missing", "请上传文件")
                    continue
                code = entry.get("code")
                materials.append(
                    _clean(
                        {
                            "code": code if isinstance(code, str) else None,
                            "name": name,
                            "blob": blob,
                        }
                    )
                )
        note = _optional_text(payload, "note", "说明", 500)
        errors.raise_if_any()
        await self._apply_supplemented(conn, row, actor, materials, note, send=True)

    async def _apply_supplemented(
        self,
        conn: AsyncConnection,
        row: Row[Any],
        actor: str,
        materials: list[dict[str, Any]],
        note: str | None,
        *,
        send: bool,
        supplemented_at: str | None = None,
    ) -> None:
        """The 补正 materials are in: the pause ends on the day the window took them (the
        date of ``supplemented_at``, which travels, so both nodes count the same pause)."""
        details = json.loads(row.details)
        supplement = details.get("supplement") or {}
        resume = Status(supplement.get("resume_status", Status.FORWARDED))
        moment = (
            datetime.fromisoformat(supplemented_at)
            if supplemented_at
            else datetime.fromtimestamp(self.clock(), CHINA)
        )
        supplied_on = moment.astimezone(CHINA).date()
        supplement["supplied"] = materials
        supplement["supplied_on"] = supplied_on.isoformat()
        details["supplement"] = supplement
        changes = {"details": json.dumps(details, ensure_ascii=False)}
        changes.update(await self._close_pause_and_recompute(row, supplied_on, reason="补正"))
        envelope = None
        if send:
            refs = await self._blob_refs(conn, [m["blob"] for m in materials])
            envelope = records.Envelope(
                "case.supplemented",
                _clean(
                    {
                        "materials": materials,
                        "supplemented_at": moment.isoformat(timespec="seconds"),
                        "clerk": self.display_name(actor),
                        "note": note,
                    }
                ),
                refs,
            )
        await self._write(
            conn,
            row,
            actor,
            "supplement",
            to_status=resume,
            changes=changes,
            event={"materials": len(materials)},
            envelope=envelope,
        )

    async def _do_catch_up(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        """容缺补齐: the window takes deferred materials; relayed as case.supplemented with
        ``deferred: true``. Each is checked against the item's file types and size."""
        outstanding = {
            m["code"]: m
            for m in records.deferred_detail(json.loads(row.application), json.loads(row.details))
            if not m["caught_up"]
        }
        if not outstanding:
            raise ApiError(409, "nothing_deferred", "本案没有待补齐的容缺材料")
        item = await self._item(row)
        errors = validation.Errors()
        given = payload.get("materials")
        materials: list[dict[str, Any]] = []
        if not isinstance(given, list) or not given:
            errors.add("materials", "required", "请上传需补齐的容缺材料")
            given = []
        seen: set[str] = set()
        for index, entry in enumerate(given[:50]):
            entry = entry if isinstance(entry, dict) else {}
            code = entry.get("code")
            path = f"materials[{index}]"
            if not isinstance(code, str) or code not in outstanding or code in seen:
                errors.add(f"{path}.code", "not_deferred", "该材料不是本案待补齐的容缺材料")
                continue
            seen.add(code)
            blob = entry.get("blob")
            upload = (
                await self._upload(blob)
                if isinstance(blob, str) and validation.SHA256_RE.match(blob)
                else None
            )
            if upload is None or not await self.blobs.has(str(blob)):
                errors.add(f"{path}.blob", "file_missing", "请上传文件")
                continue
            spec = item.material(code) if hasattr(item, "material") else None
            if spec is not None and spec.media_types and upload.media_type not in spec.media_types:
                errors.add(
                    f"{path}.blob",
                    "file_type_not_accepted",
                    f"「{spec.name}」只接受 {'、'.join(_type_names(list(spec.media_types)))} 文件",
                )
                continue
            if spec is not None and spec.max_bytes and upload.size > spec.max_bytes:
                errors.add(
                    f"{path}.blob",
                    "file_too_large",
                    f"「{spec.name}」文件不能超过 {spec.max_bytes // (1024 * 1024)} MB",
                )
                continue
            materials.append({"code": code, "name": outstanding[code]["name"], "blob": blob})
        note = _optional_text(payload, "note", "说明", 500)
        errors.raise_if_any()
        body = _clean(
            {
                "materials": materials,
                "deferred": True,
                "supplemented_at": datetime.fromtimestamp(self.clock(), CHINA).isoformat(
                    timespec="seconds"
                ),
                "clerk": self.display_name(actor),
                "note": note,
            }
        )
        refs = await self._blob_refs(conn, [m["blob"] for m in materials])
        await self._apply_caught_up(
            conn, row, actor, body, envelope=records.Envelope("case.supplemented", body, refs)
        )

    async def _apply_caught_up(
        self,
        conn: AsyncConnection,
        row: Row[Any],
        actor: str,
        body: dict[str, Any],
        *,
        envelope: records.Envelope | None,
    ) -> None:
        """Record caught-up 容缺 materials; the catch-up deadline ends with the last one."""
        details = json.loads(row.details)
        caught = details.setdefault("deferred", {}).setdefault("materials", {})
        on = today_in_china(self.clock()).isoformat()
        for material in body["materials"]:
            caught[material["code"]] = {"blob": material["blob"], "on": on}
        still = [
            m
            for m in records.deferred_detail(json.loads(row.application), details)
            if not m["caught_up"]
        ]
        changes: dict[str, Any] = {"details": json.dumps(details, ensure_ascii=False)}
        if not still:
            changes.update(
                deferred_until=None, deferred_warning_from=None, deferred_provisional=False
            )
        event = _clean(
            {
                "materials": [m["name"] for m in body["materials"]],
                "outstanding": len(still),
                "overdue": bool(row.deferred_until and on > row.deferred_until) or None,
                "by": body.get("clerk"),
            }
        )
        await self._write(
            conn, row, actor, "catch_up", changes=changes, event=event, envelope=envelope
        )

    async def _do_schedule_inspection(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        from node.cases import inspection_evidence  # the video session's case-side glue

        errors = validation.Errors()
        when = validation.iso_datetime(payload, "scheduled_at", errors, label="勘验时间")
        kind = payload.get("kind", "inspection")
        if kind not in ("inspection", "meeting"):
            errors.add(
                "kind", "invalid_choice", "类型应为 inspection（云端勘验）或 meeting（云见面）"
            )
        item = await self._item(row)
        points = getattr(getattr(item, "inspection", None), "points", None) or []
        checklist = [] if kind == "meeting" else (payload.get("checklist") or list(points))
        if not isinstance(checklist, list) or not all(isinstance(c, str) for c in checklist):
            errors.add("checklist", "invalid_type", "勘验要点应为文字列表")
        duration = payload.get("duration_minutes")
        if duration is not None and (
            not isinstance(duration, int) or isinstance(duration, bool) or not 5 <= duration <= 480
        ):
            errors.add("duration_minutes", "invalid_range", "计划时长应为 5 到 480 分钟")
        inspectors = payload.get("inspectors") or [actor]
        if not isinstance(inspectors, list) or not all(
            isinstance(u, str) and 0 < len(u) <= 64 for u in inspectors
        ):
            errors.add("inspectors", "invalid_type", "勘验人员应为用户名列表")
        errors.raise_if_any()
        assert when is not None
        details = json.loads(row.details)
        session_id = str(uuid.uuid4())
        site = validation.text(
            payload, "site_address", errors, label="勘验地点", max_len=300, required=False
        )
        note = validation.text(payload, "note", errors, label="说明", max_len=1000, required=False)
        errors.raise_if_any()
        staff = [{"role": "inspector", "name": u, "username": u} for u in inspectors]
        participants = [*staff, {"role": "applicant", "name": row.applicant_name}]
        token = await inspection_evidence.open_session(
            conn,
            row,
            session_id=session_id,
            kind=kind,
            scheduled_at=when.timestamp(),
            duration_minutes=duration,
            checklist=checklist,
            participants=participants,
            site_address=site,
            actor=actor,
            now=self.clock(),
        )
        schedule = _clean(
            {
                "session_id": session_id,
                "scheduled_at": when.isoformat(),
                "join_url": f"{self.base_url}/inspection/{session_id}/join?token={token}",
                "checklist": checklist,
                "participants": [{"role": p["role"], "name": p["name"]} for p in participants],
                "join_token": token,
                "duration_minutes": duration,
                "site_address": site,
                "note": note or ("云见面" if kind == "meeting" else None),
            }
        )
        details["inspection"] = schedule
        await self._write(
            conn,
            row,
            actor,
            "schedule_inspection",
            to_status=Status.INSPECTION,
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event={"scheduled_at": schedule["scheduled_at"], "session_id": session_id},
            envelope=records.Envelope("case.inspection_scheduled", schedule),
        )

    async def _do_complete_inspection(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        raise ApiError(409, "use_inspection_console", "请在云端勘验控制台结束并签署勘验笔录")

    async def _do_decide(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        errors = validation.Errors()
        outcome = validation.choice(
            payload, "outcome", {"approved": "准予", "denied": "不予"}, errors, label="办理结果"
        )
        reason = validation.text(
            payload, "reason", errors, label="决定理由", max_len=1000, required=outcome == "denied"
        )
        certificate = validation.text(
            payload, "certificate_no", errors, label="证照编号", max_len=100, required=False
        )
        if certificate and outcome == "denied":
            errors.add("certificate_no", "not_applicable", "不予办理的决定没有证照编号")
        documents = []
        for index, doc in enumerate(payload.get("documents") or []):
            doc = doc if isinstance(doc, dict) else {}
            blob = doc.get("blob")
            if (
                not isinstance(blob, str)
                or not await self.blobs.has(blob)
                or await self._upload(blob) is None
            ):
                errors.add(f"documents[{index}].blob", "file_missing", "请上传结果文书")
                continue
            name = validation.text(
                doc, "name", errors, label="文书名称", path=f"documents[{index}].name"
            )
            documents.append({"blob": blob, "name": name})
        if outcome == "approved" and not documents:
            errors.add("documents", "required", "准予决定须上传结果文书（如许可证 PDF）")
        errors.raise_if_any()
        decided_at = datetime.fromtimestamp(self.clock(), CHINA).isoformat(timespec="seconds")
        details = json.loads(row.details)
        decision = _clean(
            {
                "outcome": outcome,
                "reason": reason,
                "certificate_no": certificate,
                "documents": documents,
                "decided_at": decided_at,
                "approver": self.display_name(actor),
            }
        )
        details["decision"] = decision
        changes = {"details": json.dumps(details, ensure_ascii=False)}
        changes.update(self._close_pause(row))
        refs = await self._blob_refs(conn, [d["blob"] for d in documents])
        await self._write(
            conn,
            row,
            actor,
            "decide",
            to_status=Status(outcome),
            changes=changes,
            event={"outcome": outcome, "documents": len(documents)},
            envelope=records.Envelope("case.decided", decision, refs),
        )

    async def _do_dispatch(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        if row.status == Status.APPROVED and row.deferred_until is not None:
            raise ApiError(
                409,
                "deferred_outstanding",
                f"容缺材料尚未补齐（补齐期限 {row.deferred_until}），补齐后方可出件",
            )
        errors = validation.Errors()
        method = validation.choice(
            payload, "method", {"mail": "邮寄", "window": "窗口领取"}, errors, label="出件方式"
        )
        courier = tracking = None
        if method == "mail":
            courier = validation.text(payload, "courier", errors, label="快递公司", max_len=50)
            tracking = validation.text(payload, "tracking_no", errors, label="运单号", max_len=40)
            if tracking and not re.fullmatch(r"[A-Za-z0-9-]{4,40}", tracking):
                errors.add(
                    "tracking_no", "invalid_tracking_no", "运单号应为 4 到 40 位字母、数字或连字符"
                )
        errors.raise_if_any()
        dispatched_at = datetime.fromtimestamp(self.clock(), CHINA).isoformat(timespec="seconds")
        body = _clean(
            {
                "method": method,
                "courier": courier,
                "tracking_no": tracking,
                "dispatched_at": dispatched_at,
            }
        )
        details = json.loads(row.details)
        details["dispatch"] = body
        await self._write(
            conn,
            row,
            actor,
            "dispatch",
            to_status=Status.DISPATCHED,
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event=body,
            envelope=records.Envelope("case.dispatched", body),
        )

    async def _do_deliver(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        recipient = _optional_text(payload, "recipient", "签收人", 100)
        delivered_at = datetime.fromtimestamp(self.clock(), CHINA).isoformat(timespec="seconds")
        method = json.loads(row.details).get("dispatch", {}).get("method", "window")
        body = _clean({"delivered_at": delivered_at, "method": method, "recipient": recipient})
        details = json.loads(row.details)
        details["delivery"] = body
        await self._write(
            conn,
            row,
            actor,
            "deliver",
            to_status=Status.DELIVERED,
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event={"delivered_at": delivered_at},
            envelope=records.Envelope("case.delivered", body),
        )

    async def _do_withdraw(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        errors = validation.Errors()
        reason = validation.text(payload, "reason", errors, label="撤件原因", max_len=500)
        errors.raise_if_any()
        details = json.loads(row.details)
        if details.get("withdrawal", {}).get("requested"):
            raise ApiError(409, "withdrawal_pending", "撤件申请已提交，等待办理地确认")
        requested_at = datetime.fromtimestamp(self.clock(), CHINA).isoformat(timespec="seconds")
        details["withdrawal"] = {"requested": True, "reason": reason, "requested_at": requested_at}
        if not records.spans_two_nodes(row):
            await self._apply_withdrawn(conn, row, actor, reason, send=False)
            return
        await self._write(
            conn,
            row,
            actor,
            "withdraw",
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event={"reason": reason},
            envelope=records.Envelope(
                "case.withdraw_requested", {"reason": reason, "requested_at": requested_at}
            ),
        )

    async def _do_confirm_withdrawal(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        reason = _optional_text(payload, "reason", "撤件原因", 500)
        await self._apply_withdrawn(conn, row, actor, reason, send=True)

    async def _apply_withdrawn(
        self, conn: AsyncConnection, row: Row[Any], actor: str, reason: str | None, *, send: bool
    ) -> None:
        withdrawn_at = datetime.fromtimestamp(self.clock(), CHINA).isoformat(timespec="seconds")
        details = json.loads(row.details)
        details["withdrawal"] = _clean(
            {
                **details.get("withdrawal", {}),
                "withdrawn_at": withdrawn_at,
                "reason": reason or details.get("withdrawal", {}).get("reason"),
            }
        )
        changes = {"details": json.dumps(details, ensure_ascii=False), **self._close_pause(row)}
        envelope = (
            records.Envelope(
                "case.withdrawn", _clean({"withdrawn_at": withdrawn_at, "reason": reason})
            )
            if send
            else None
        )
        await self._write(
            conn,
            row,
            actor,
            "withdrawn",
            to_status=Status.WITHDRAWN,
            changes=changes,
            event={"reason": reason},
            envelope=envelope,
        )

    async def _do_rate(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        body = self._validate_rating(row, payload)
        await self._apply_rating(conn, row, actor, body, send=True)

    def _validate_rating(self, row: Row[Any], payload: dict[str, Any]) -> dict[str, Any]:
        errors = validation.Errors()
        level = validation.integer(payload, "level", errors, label="评价等级", minimum=1, maximum=5)
        stage = validation.choice(
            payload, "stage", {"accept": "受理", "decide": "办结"}, errors, label="评价环节"
        )
        channel = validation.integer(
            payload, "channel", errors, label="评价渠道", minimum=1, maximum=7
        )
        comment = validation.text(
            payload, "comment", errors, label="评价内容", max_len=1000, required=False
        )
        real_name = payload.get("real_name", True)
        if not isinstance(real_name, bool):
            errors.add("real_name", "invalid_type", "是否实名应为是或否")
        if stage == "decide" and Status(row.status) not in DECIDED | {
            Status.DISPATCHED,
            Status.DELIVERED,
        }:
            errors.add("stage", "not_yet_decided", "案件尚未办结，只能评价受理环节")
        if level is not None and level <= 2 and not comment:
            errors.add("comment", "required", "差评请填写具体意见，便于整改")
        errors.raise_if_any()
        return _clean(
            {
                "rating_id": str(uuid.uuid4()),
                "level": level,
                "stage": stage,
                "channel": channel,
                "comment": comment,
                "real_name": real_name,
                "rated_at": datetime.fromtimestamp(self.clock(), CHINA).isoformat(
                    timespec="seconds"
                ),
            }
        )

    async def rate_as_citizen(self, case_id: int, payload: dict[str, Any]) -> None:
        """The applicant rates on the citizen page (channel from the payload, default mobile)."""
        async with self.db.write() as conn:
            row = await records.load_for_update(conn, case_id)
            assert row is not None
            try:
                check(
                    ACTIONS["rate"],
                    state=Status(row.status),
                    role=None,
                    sides=records.sides(row, self.region),
                )
            except TransitionError as exc:
                raise ApiError(409, exc.code, exc.message) from exc
            body = self._validate_rating(row, payload)
            await self._apply_rating(conn, row, "citizen", body, send=True)

    async def _apply_rating(
        self, conn: AsyncConnection, row: Row[Any], actor: str, body: dict[str, Any], *, send: bool
    ) -> None:
        due = None
        provisional = False
        if body["level"] <= 2 and Side.HANDLING in records.sides(row, self.region):
            deadline = (await self.calendar()).add_working_days(
                today_in_china(self.clock()), self.rectification_days
            )
            due, provisional = deadline.date.isoformat(), bool(deadline.provisional)
        await conn.execute(
            ratings.insert().values(
                rating_id=body["rating_id"],
                case_id=row.id,
                level=body["level"],
                stage=body["stage"],
                channel=body["channel"],
                comment=body.get("comment"),
                real_name=body["real_name"],
                rated_at=self.clock(),
                rectification_due=due,
                rectification_days=self.rectification_days if due else None,
                rectification_provisional=provisional,
            )
        )
        changes = {"rectification_due": due} if due else {}
        await self._write(
            conn,
            row,
            actor,
            "rate",
            changes=changes,
            event={"level": body["level"], "stage": body["stage"], "rectification_due": due},
            envelope=records.Envelope("case.rated", body) if send else None,
        )

    async def _do_rectify(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        errors = validation.Errors()
        rating_id = validation.text(payload, "rating_id", errors, label="评价编号", max_len=36)
        text_ = validation.text(payload, "rectification", errors, label="整改情况", max_len=2000)
        follow = payload.get("follow_up")
        follow_up = None
        if follow is not None:
            follow = follow if isinstance(follow, dict) else {}
            result = validation.text(
                follow, "result", errors, label="回访结果", max_len=1000, path="follow_up.result"
            )
            satisfied = follow.get("satisfied")
            if not isinstance(satisfied, bool):
                errors.add("follow_up.satisfied", "invalid_type", "请选择回访是否满意")
            follow_up = {
                "result": result,
                "satisfied": satisfied,
                "by": self.display_name(actor),
                "at": datetime.fromtimestamp(self.clock(), CHINA).isoformat(timespec="seconds"),
            }
        errors.raise_if_any()
        rating = (
            await conn.execute(
                select(ratings).where(ratings.c.rating_id == rating_id, ratings.c.case_id == row.id)
            )
        ).first()
        if rating is None or rating.level > 2:
            raise ApiError(404, "rating_not_found", "没有需要整改的差评")
        if rating.rectified_at is not None:
            raise ApiError(409, "already_rectified", "该差评已整改")
        body = _clean(
            {
                "rating_id": rating_id,
                "rectification": text_,
                "follow_up": follow_up,
                "rectified_at": datetime.fromtimestamp(self.clock(), CHINA).isoformat(
                    timespec="seconds"
                ),
            }
        )
        await self._apply_rectified(conn, row, actor, body, send=True)

    async def _apply_rectified(
        self, conn: AsyncConnection, row: Row[Any], actor: str, body: dict[str, Any], *, send: bool
    ) -> None:
        await conn.execute(
            update(ratings)
            .where(ratings.c.rating_id == body["rating_id"])
            .values(
                rectified_at=self.clock(),
                rectification=body["rectification"],
                follow_up=json.dumps(body.get("follow_up"), ensure_ascii=False)
                if body.get("follow_up")
                else None,
            )
        )
        still_open = (
            await conn.execute(
                select(func.count())
                .select_from(ratings)
                .where(
                    ratings.c.case_id == row.id,
                    ratings.c.level <= 2,
                    ratings.c.rectified_at.is_(None),
                    ratings.c.rectification_due.is_not(None),
                )
            )
        ).scalar_one()
        await self._write(
            conn,
            row,
            actor,
            "rectify",
            changes={"rectification_due": row.rectification_due if still_open else None},
            event={"rating_id": body["rating_id"]},
            envelope=records.Envelope("case.rectified", body) if send else None,
        )

    async def _do_progress(
        self, conn: AsyncConnection, row: Row[Any], actor: str, payload: dict[str, Any]
    ) -> None:
        errors = validation.Errors()
        kind = validation.choice(
            payload,
            "kind",
            {"pause": "暂停计时", "resume": "恢复计时", "extension": "延期"},
            errors,
            label="进度类型",
        )
        reason = validation.text(payload, "reason", errors, label="原因", max_len=500)
        procedure = validation.choice(
            payload,
            "procedure",
            {
                "hearing": "听证",
                "testing": "检验检测",
                "expert_review": "专家评审",
                "other": "其他",
            },
            errors,
            label="特别程序",
            required=False,
        )
        days = None
        if kind == "extension":
            days = validation.integer(
                payload, "extension_days", errors, label="延长天数", minimum=1, maximum=30
            )
        if procedure and kind != "pause":
            errors.add("procedure", "not_applicable", "特别程序只在暂停计时时填写")
        if kind == "pause" and row.paused:
            errors.add("kind", "already_paused", "计时已暂停")
        if kind == "resume" and not row.paused:
            errors.add("kind", "not_paused", "计时未暂停")
        errors.raise_if_any()
        today = today_in_china(self.clock())
        body = _clean(
            {
                "kind": kind,
                "reason": reason,
                "procedure": procedure,
                "extension_days": days,
                "on": today.isoformat(),
            }
        )
        changes = await self._progress_changes(row, body)
        await self._write(
            conn,
            row,
            actor,
            "progress",
            changes=changes,
            event=body,
            envelope=records.Envelope("case.progress", body),
        )

    async def _progress_changes(self, row: Row[Any], body: dict[str, Any]) -> dict[str, Any]:
        day = date.fromisoformat(body["on"])
        if body["kind"] == "pause":
            return self._open_pause(row, day, body["reason"])
        if body["kind"] == "resume":
            return await self._close_pause_and_recompute(row, day)
        limit = int(row.time_limit_days or 0) + int(body["extension_days"])
        fields = compute(
            await self.calendar(),
            accepted_on=date.fromisoformat(row.accepted_on),
            limit_days=limit,
            pauses=json.loads(row.pauses),
            warning_days=_warning_days(row),
        )
        return {
            "time_limit_days": limit,
            "deadline": fields.deadline,
            "warning_from": fields.warning_from,
            "deadline_provisional": fields.provisional,
        }

    # -- clock pauses ----------------------------------------------------------------------

    @staticmethod
    def _open_pause(row: Row[Any], day: date, reason: str) -> dict[str, Any]:
        """Stop the clock. One pause at a time: a case already paused (a hearing, say) stays
        paused from the day it was, and a 补正 asked meanwhile opens no second pause."""
        if row.paused:
            return {}
        pauses = json.loads(row.pauses)
        pauses.append([day.isoformat(), None, reason])
        return {
            "pauses": json.dumps(pauses, ensure_ascii=False),
            "paused": True,
            "paused_since": day.isoformat(),
        }

    def _close_pause(self, row: Row[Any]) -> dict[str, Any]:
        if not row.paused:
            return {}
        pauses = json.loads(row.pauses)
        pauses[-1][1] = today_in_china(self.clock()).isoformat()
        return {
            "pauses": json.dumps(pauses, ensure_ascii=False),
            "paused": False,
            "paused_since": None,
        }

    async def _close_pause_and_recompute(
        self, row: Row[Any], day: date | None = None, *, reason: str | None = None
    ) -> dict[str, Any]:
        """Restart the clock and move the deadline by the pause; with ``reason``, only a
        pause opened for that reason ends (补正 supplied during a hearing: the hearing's
        pause goes on)."""
        if not row.paused:
            return {}
        pauses = json.loads(row.pauses)
        if reason is not None and (len(pauses[-1]) < 3 or pauses[-1][2] != reason):
            return {}
        pauses[-1][1] = (day or today_in_china(self.clock())).isoformat()
        changes: dict[str, Any] = {
            "pauses": json.dumps(pauses, ensure_ascii=False),
            "paused": False,
            "paused_since": None,
        }
        if row.accepted_on and row.time_limit_days:
            fields = compute(
                await self.calendar(),
                accepted_on=date.fromisoformat(row.accepted_on),
                limit_days=int(row.time_limit_days),
                pauses=pauses,
                warning_days=_warning_days(row),
            )
            changes.update(
                deadline=fields.deadline,
                warning_from=fields.warning_from,
                deadline_provisional=fields.provisional,
            )
        return changes

    # -- messages from the other side ------------------------------------------------------

    async def apply_envelope(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply a partner's message to our record of the case (federation applier handler)."""
        actor = f"partner:{envelope.iss}"
        if envelope.typ == "case.submit":
            await self._apply_submit(conn, envelope, actor)
            return
        row = await records.load_by_xt(conn, envelope.xt)
        if row is None:
            raise BusinessRefusal("unknown_case", "no case with this xt")
        if envelope.iss not in (row.receiving_region, row.handling_region):
            raise BusinessRefusal("not_a_party", "sender is not a region of this case")
        apply = _INBOUND.get(envelope.typ)
        if apply is None:
            raise BusinessRefusal("unsupported_message", envelope.typ)
        await apply(self, conn, row, envelope, actor)

    async def refuse_envelope(
        self, conn: AsyncConnection, envelope: Envelope, refusal: BusinessRefusal
    ) -> None:
        """Answer a refused message with ``case.error`` (never for a ``case.error`` itself)."""
        if envelope.typ == "case.error":
            return
        await self.outbox.enqueue(
            conn,
            partner=envelope.iss,
            typ="case.error",
            xt=envelope.xt,
            body={"code": refusal.code, "detail": refusal.detail[:500], "ref": envelope.jti},
            now=self.clock(),
        )

    async def _apply_submit(self, conn: AsyncConnection, envelope: Envelope, actor: str) -> None:
        body = envelope.body
        if await records.load_by_xt(conn, envelope.xt, lock=False) is not None:
            raise BusinessRefusal("duplicate_case", "a case with this xt exists")
        item = await self.items(body["item_code"])
        applicant = body["applicant"]
        now = self.clock()
        application = {
            k: body[k]
            for k in ("form", "materials", "delivery", "identity_verified", "received_at")
            if k in body
        }
        if "bundle" in body:
            application["bundle"] = body["bundle"]
        if "received_by" in body:
            application["received_by"] = body["received_by"]
        # 容缺: the window fixed the catch-up deadline with the applicant; the warning lead is
        # the item's, counted on our calendar.
        promised = sorted(
            str(m["deferred_until"])
            for m in body.get("materials", [])
            if m.get("status") == "deferred" and m.get("deferred_until")
        )
        deferred_until = promised[0] if promised else None
        catch_up: dict[str, Any] = {"deferred_until": deferred_until}
        if deferred_until is not None:
            catch_up = await self._relayed_catch_up(item, deferred_until)
        row_id = (
            await conn.execute(
                cases.insert()
                .values(
                    case_no=body["case_no"],
                    xt_id=envelope.xt,
                    mode=body["mode"],
                    item_code=body["item_code"],
                    item_name=item.name if item else body["item_code"],
                    receiving_region=envelope.iss,
                    handling_region=self.region,
                    partner_region=envelope.iss,
                    status=str(Status.FORWARDED),
                    status_code=PROVINCIAL_CODES[Status.FORWARDED],
                    applicant_kind=applicant["kind"],
                    applicant_name=applicant["name"],
                    applicant_id_type=applicant["id_type"],
                    applicant_id_number=applicant["id_number"],
                    applicant_phone=applicant["phone"],
                    application=json.dumps(application, ensure_ascii=False),
                    details="{}",
                    **catch_up,
                    received_at=now,
                    pauses="[]",
                    paused=False,
                    deadline_provisional=False,
                    created_at=now,
                    updated_at=now,
                    event_count=0,
                    head_hash="",
                )
                .returning(cases.c.id)
            )
        ).scalar_one()
        for blob in envelope.blobs:
            await _remember_upload(conn, blob, actor, now)
        row = await records.load_for_update(conn, row_id)
        assert row is not None
        await records.record(
            conn,
            row,
            region=self.region,
            outbox=self.outbox,
            actor=actor,
            action="submit",
            event=_clean(
                {
                    "jti": envelope.jti,
                    "materials": len(body.get("materials", [])),
                    "deferred_until": deferred_until,
                    "by": body.get("received_by", {}).get("clerk"),
                }
            ),
            now=now,
        )
        if item is None or item.retired or item.handling_region != self.region:
            row = await records.load_for_update(conn, row_id)
            assert row is not None
            await self._write(
                conn,
                row,
                "system",
                "not_accept",
                to_status=Status.NOT_ACCEPTED,
                event={"reason": "unknown_item"},
                envelope=records.Envelope(
                    "case.not_accepted",
                    {
                        "reason": "本地区无此事项或事项已停用",
                        "legal_basis": "《行政许可法》第三十二条",
                    },
                ),
            )

    async def _relayed_catch_up(self, item: Any, deferred_until: str) -> dict[str, Any]:
        """容缺 on the handling node: the window's catch-up deadline as the window set it.

        The catch-up is the receiving region's business (it takes the material and holds the
        result until then): its date is the window's, never provisional and never recomputed
        here. Recounting it on our calendar would make the two nodes disagree whenever they
        have loaded different years."""
        calendar = await self.calendar()
        lead = int(getattr(item, "warning_days", DEFAULT_WARNING_DAYS))
        until = date.fromisoformat(deferred_until)
        return {
            "deferred_until": deferred_until,
            "deferred_warning_from": calendar.subtract_working_days(until, lead).isoformat(),
        }

    async def _in_accepted(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        self._expect(row, ACTIONS["accept"], env)
        b = env.body
        warning_days = int(b.get("warning_days", DEFAULT_WARNING_DAYS))
        fields = compute(
            await self.calendar(),
            accepted_on=date.fromisoformat(b["accepted_on"]),
            limit_days=int(b["time_limit_days"]),
            pauses=json.loads(row.pauses),
            warning_days=warning_days,
        )
        await self._write(
            conn,
            row,
            actor,
            "accept",
            to_status=Status.ACCEPTED,
            changes={
                "accepted_on": b["accepted_on"],
                "time_limit_days": b["time_limit_days"],
                "warning_days": warning_days,
                **fields.as_columns(),
            },
            event=_clean(
                {"jti": env.jti, "promised_date": b["promised_date"], "by": b.get("approver")}
            ),
        )

    async def _in_not_accepted(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        self._expect(row, ACTIONS["not_accept"], env)
        await self._write(
            conn,
            row,
            actor,
            "not_accept",
            to_status=Status.NOT_ACCEPTED,
            changes=self._close_pause(row),
            event={"jti": env.jti, "reason": env.body.get("reason")},
        )

    async def _in_supplement_requested(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        self._expect(row, ACTIONS["request_supplement"], env)
        details = _new_supplement(
            json.loads(row.details), {**env.body, "resume_status": row.status}
        )
        changes: dict[str, Any] = {"details": json.dumps(details, ensure_ascii=False)}
        if row.status == Status.ACCEPTED:
            changes.update(
                self._open_pause(row, date.fromisoformat(env.body["requested_on"]), "补正")
            )
        await self._write(
            conn,
            row,
            actor,
            "request_supplement",
            to_status=Status.SUPPLEMENT_PENDING,
            changes=changes,
            event={
                "jti": env.jti,
                "items": len(env.body["items"]),
                "deadline": env.body.get("deadline"),
            },
        )

    async def _in_supplemented(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        if env.body.get("deferred"):
            self._expect(row, ACTIONS["catch_up"], env)
            expected = {
                m["code"]
                for m in records.deferred_detail(
                    json.loads(row.application), json.loads(row.details)
                )
                if not m["caught_up"]
            }
            if not {m["code"] for m in env.body["materials"]} <= expected:
                raise BusinessRefusal("not_deferred", "a material that is not outstanding 容缺")
            for blob in env.blobs:
                await _remember_upload(conn, blob, actor, self.clock())
            await self._apply_caught_up(conn, row, actor, env.body, envelope=None)
            return
        self._expect(row, ACTIONS["supplement"], env)
        for blob in env.blobs:
            await _remember_upload(conn, blob, actor, self.clock())
        await self._apply_supplemented(
            conn,
            row,
            actor,
            env.body["materials"],
            env.body.get("note"),
            send=False,
            supplemented_at=env.body.get("supplemented_at"),
        )

    async def _in_inspection_scheduled(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        self._expect(row, ACTIONS["schedule_inspection"], env)
        details = json.loads(row.details)
        details["inspection"] = env.body
        await self._write(
            conn,
            row,
            actor,
            "schedule_inspection",
            to_status=Status.INSPECTION,
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event={"jti": env.jti, "scheduled_at": env.body.get("scheduled_at")},
        )

    async def _in_inspection_completed(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        from node.cases import inspection_evidence  # the video session's case-side glue

        self._expect(row, ACTIONS["complete_inspection"], env)
        verified = await inspection_evidence.verify_incoming(self, env)
        for blob in env.blobs:
            await inspection_evidence.remember(conn, blob, actor, self.clock())
        details = json.loads(row.details)
        evidence = {**env.body, "verified": verified}
        details.setdefault("inspection", {})["evidence"] = evidence
        await self._write(
            conn,
            row,
            actor,
            "complete_inspection",
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event={"jti": env.jti, "manifest": verified["manifest"]},
        )

    async def _in_decided(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        self._expect(row, ACTIONS["decide"], env)
        details = json.loads(row.details)
        details["decision"] = env.body
        for blob in env.blobs:
            await _remember_upload(conn, blob, actor, self.clock())
        await self._write(
            conn,
            row,
            actor,
            "decide",
            to_status=Status(env.body["outcome"]),
            changes={"details": json.dumps(details, ensure_ascii=False), **self._close_pause(row)},
            event={"jti": env.jti, "outcome": env.body["outcome"]},
        )

    async def _in_dispatched(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        self._expect(row, ACTIONS["dispatch"], env)
        details = json.loads(row.details)
        details["dispatch"] = env.body
        await self._write(
            conn,
            row,
            actor,
            "dispatch",
            to_status=Status.DISPATCHED,
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event={"jti": env.jti},
        )

    async def _in_delivered(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        self._expect(row, ACTIONS["deliver"], env)
        details = json.loads(row.details)
        details["delivery"] = env.body
        await self._write(
            conn,
            row,
            actor,
            "deliver",
            to_status=Status.DELIVERED,
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event={"jti": env.jti},
        )

    async def _in_withdraw_requested(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        if Status(row.status) not in OPEN:
            raise BusinessRefusal("not_withdrawable", f"case is {row.status}")
        details = json.loads(row.details)
        details["withdrawal"] = {"requested": True, **env.body}
        await conn.execute(
            update(cases)
            .where(cases.c.id == row.id)
            .values(details=json.dumps(details, ensure_ascii=False))
        )
        fresh = await records.load_for_update(conn, row.id)
        assert fresh is not None
        # The applicant may withdraw at any time before the decision: confirmed at once.
        await self._apply_withdrawn(conn, fresh, actor, env.body.get("reason"), send=True)

    async def _in_withdrawn(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        self._expect(row, ACTIONS["confirm_withdrawal"], env)
        await self._apply_withdrawn(conn, row, actor, env.body.get("reason"), send=False)

    async def _in_rated(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        await self._apply_rating(conn, row, actor, env.body, send=False)

    async def _in_rectified(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        await self._apply_rectified(conn, row, actor, env.body, send=False)

    async def _in_progress(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        changes = await self._progress_changes(row, env.body)
        await self._write(
            conn, row, actor, "progress", changes=changes, event={"jti": env.jti, **env.body}
        )

    async def _in_error(
        self, conn: AsyncConnection, row: Row[Any], env: Envelope, actor: str
    ) -> None:
        details = json.loads(row.details)
        details.setdefault("errors", []).append(env.body)
        await self._write(
            conn,
            row,
            actor,
            "partner_error",
            changes={"details": json.dumps(details, ensure_ascii=False)},
            event={"jti": env.jti, **env.body},
        )

    def _expect(self, row: Row[Any], action: Any, env: Envelope) -> None:
        """The partner may only send what its side may do, from a state that allows it."""
        other = frozenset({Side.HANDLING if row.handling_region == env.iss else Side.RECEIVING})
        try:
            check(action, state=Status(row.status), role=None, sides=other)
        except TransitionError as exc:
            raise BusinessRefusal(exc.code, f"{env.typ} not allowed in state {row.status}") from exc

    # -- reading ---------------------------------------------------------------------------

    async def get(self, staff: Staff, case_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(select(cases).where(cases.c.id == case_id))).first()
            if row is None:
                raise ApiError(404, "case_not_found", "案件不存在")
            events = await _events(conn, case_id)
            rated = await _ratings(conn, case_id)
        return records.detail(row, events, today_in_china(self.clock()), rated)


async def _ratings(conn: AsyncConnection, case_id: int) -> list[Row[Any]]:
    return list(
        (
            await conn.execute(
                select(ratings).where(ratings.c.case_id == case_id).order_by(ratings.c.rated_at)
            )
        ).all()
    )


async def _events(conn: AsyncConnection, case_id: int) -> list[Row[Any]]:
    return list(
        (
            await conn.execute(
                select(case_events)
                .where(case_events.c.case_id == case_id)
                .order_by(case_events.c.seq)
            )
        ).all()
    )


async def _remember_upload(
    conn: AsyncConnection, blob: dict[str, Any], actor: str, now: float
) -> None:
    exists = (
        await conn.execute(select(uploads.c.sha256).where(uploads.c.sha256 == blob["sha256"]))
    ).first()
    if exists is None:
        await conn.execute(
            uploads.insert().values(
                sha256=blob["sha256"],
                media_type=blob["media_type"],
                size=blob["size"],
                name=blob["name"],
                uploaded_at=now,
                uploaded_by=actor,
            )
        )


def _new_supplement(details: dict[str, Any], notice: dict[str, Any]) -> dict[str, Any]:
    """``details`` with ``notice`` as the current 补正 notice (``supplement``, which the rest
    of the code reads) and the one it replaces kept in ``supplement_history``, latest first."""
    if details.get("supplement"):
        details["supplement_history"] = [
            details["supplement"],
            *details.get("supplement_history", []),
        ]
    details["supplement"] = notice
    return details


def _warning_days(row: Row[Any]) -> int:
    """The warning lead fixed at 受理 (the default for cases accepted before it was stored)."""
    return DEFAULT_WARNING_DAYS if row.warning_days is None else int(row.warning_days)


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    """Drop absent optional fields (the wire schema has no nulls where a field is optional)."""
    return {k: v for k, v in body.items() if v is not None}


def _optional_text(payload: dict[str, Any], key: str, label: str, max_len: int) -> str | None:
    errors = validation.Errors()
    value = validation.text(payload, key, errors, label=label, max_len=max_len, required=False)
    errors.raise_if_any()
    return value


def _type_names(media_types: list[str]) -> list[str]:
    names = {"application/pdf": "PDF", "image/jpeg": "JPG", "image/png": "PNG"}
    return [names.get(t, t) for t in media_types]


_INBOUND: dict[str, Callable[..., Awaitable[None]]] = {
    "case.accepted": CaseService._in_accepted,
    "case.not_accepted": CaseService._in_not_accepted,
    "case.supplement_requested": CaseService._in_supplement_requested,
    "case.supplemented": CaseService._in_supplemented,
    "case.inspection_scheduled": CaseService._in_inspection_scheduled,
    "case.inspection_completed": CaseService._in_inspection_completed,
    "case.decided": CaseService._in_decided,
    "case.dispatched": CaseService._in_dispatched,
    "case.delivered": CaseService._in_delivered,
    "case.withdraw_requested": CaseService._in_withdraw_requested,
    "case.withdrawn": CaseService._in_withdrawn,
    "case.rated": CaseService._in_rated,
    "case.rectified": CaseService._in_rectified,
    "case.progress": CaseService._in_progress,
    "case.error": CaseService._in_error,
}
