"""Taking an application: at the window (异地代收代办, or 全程网办 on our own item), online
(全程网办 on our public page), as one 多地联办 bundle, or as a partner's ``case.submit``.

Every new case is numbered here (``<region>-<YYYYMMDD>-<n>``, a region's numbers belong to it)
and gets its first event through ``records.record``; a case that spans two nodes sends
``case.submit`` to the handling region in the same transaction.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases import deadlines, personal, records, validation
from node.cases.actions import registry
from node.cases.actions.context import CaseDeps, check_file, clean, remember_file
from node.cases.actor import Actor
from node.cases.deadlines import DEFAULT_WARNING_DAYS
from node.cases.errors import CaseError, CaseErrorCode, field_error
from node.cases.lifecycle import PROVINCIAL_CODES, Mode, Status
from node.cases.models import bundles, case_counters, cases
from node.clock import china_iso, today_in_china
from node.storage import filetypes
from node.storage.upserts import conflict_insert
from protocol.envelope import Envelope


def _query_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


# -- the window and the public page ----------------------------------------------------------


async def receive_application(deps: CaseDeps, actor: Actor, payload: Any) -> dict[str, Any]:
    """A window clerk takes an application (异地代收代办, or 全程网办 on our own item).

    Returns the case and the query code to print on the 收件凭证 (shown once).
    """
    validated = await validate_application(deps, payload, parts=False)
    if validated["mode"] == Mode.JOINT:
        raise CaseError(
            CaseErrorCode.INVALID_INPUT,
            "多地联办请使用联办申请",
            fields=[field_error("mode", "invalid_choice", "多地联办请通过 /api/v1/bundles 提交")],
        )
    async with deps.db.write() as conn:
        case, code = await create_case(deps, conn, actor, validated, 0)
    return {"case": case, "query_code": code}


@dataclass(frozen=True)
class CitizenIdentity:
    """An online applicant as the province's identity service vouched for them (the HTTP edge
    verified the ID token: node/identity)."""

    name: str
    id_number: str
    #: The provider (``iss``) that vouched.
    issuer: str


async def receive_online(
    deps: CaseDeps, payload: Any, identity: CitizenIdentity | None
) -> dict[str, Any]:
    """全程网办: the applicant applies on this (the handling) region's public page.

    The applicant is the verified citizen: name and ID number come from ``identity``, never
    from the body; a body that names someone else is refused (``identity_mismatch``), since
    applying for another person is done at a window (异地代收代办) where staff see both.
    Without an identity the application is refused (``identity_required``) unless the node
    allows unverified online applications; those are kept with ``identity_verified: false``
    and cannot be accepted before staff record a 人证核验 (docs/identity.md)."""
    if not isinstance(payload, dict):
        raise CaseError(CaseErrorCode.INVALID_INPUT, "请求体应为 JSON 对象")
    if identity is None and not deps.allow_unverified_online:
        raise CaseError(
            CaseErrorCode.IDENTITY_REQUIRED, "网上申请须先通过统一身份认证登录，或到窗口办理"
        )
    # The window's "identity checked" box does not apply online: what stands for it is below.
    payload = {**payload, "mode": "online", "identity_verified": True}
    if identity is not None:
        payload["applicant"] = verified_applicant(identity, payload.get("applicant"))
    validated = await validate_application(deps, payload, parts=False)
    if identity is None:
        validated["identity_verified"] = False
    else:
        validated["identity"] = {
            "method": "oidc",
            "issuer": identity.issuer,
            "verified_at": china_iso(deps.clock()),
        }
    async with deps.db.write() as conn:
        case, code = await create_case(deps, conn, Actor.citizen(), validated, 0)
    return {"case": case, "query_code": code}


def verified_applicant(identity: CitizenIdentity, given: Any) -> dict[str, Any]:
    """The applicant of an online application by the verified citizen: name, ID type and ID
    number from the identity; only the phone from the body. A body naming another person
    (or an organisation) is refused."""
    given = given if isinstance(given, dict) else {}
    named = str(given.get("name") or "").strip()
    number = str(given.get("id_number") or "").strip().upper()
    if (
        (named and named != identity.name)
        or (number and number != identity.id_number)
        or given.get("kind", "person") != "person"
        or given.get("id_type", "resident_id") != "resident_id"
    ):
        raise CaseError(
            CaseErrorCode.IDENTITY_MISMATCH,
            "网上申请只能以登录本人的名义提交；代他人或单位申请请到窗口办理",
        )
    return {
        "kind": "person",
        "name": identity.name,
        "id_type": "resident_id",
        "id_number": identity.id_number,
        "phone": given.get("phone"),
    }


async def receive_bundle(deps: CaseDeps, actor: Actor, payload: Any) -> dict[str, Any]:
    """多地联办: one application, one window; one case per handling region."""
    validated = await validate_application(deps, payload, parts=True)
    async with deps.db.write() as conn:
        bundle_no = await next_case_no(deps, conn)
        bundle_id = (
            await conn.execute(
                bundles.insert()
                .values(bundle_no=bundle_no, name=validated["name"], created_at=deps.clock())
                .returning(bundles.c.id)
            )
        ).scalar_one()
        code = _query_code()
        parts = []
        count = len(validated["items"])
        for index in range(count):
            case, _ = await create_case(
                deps,
                conn,
                actor,
                validated,
                index,
                case_no=f"{bundle_no}-{index + 1}",
                bundle=(bundle_id, bundle_no, index + 1, count),
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


async def validate_application(deps: CaseDeps, payload: Any, *, parts: bool) -> dict[str, Any]:
    errors = validation.Errors()
    if not isinstance(payload, dict):
        raise CaseError(CaseErrorCode.INVALID_INPUT, "请求体应为 JSON 对象")
    applicant = validation.applicant(payload.get("applicant"), errors)
    delivery = validation.delivery(payload.get("delivery"), errors)
    if payload.get("identity_verified") is not True:
        errors.add("identity_verified", "identity_not_verified", "请先核验申请人身份证件原件")
    mode = (
        "joint"
        if parts
        else validation.choice(
            payload, "mode", {"proxy": "代收代办", "online": "全程网办"}, errors, label="办理模式"
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
        item = await deps.items(code) if isinstance(code, str) else None
        if item is None or getattr(item, "retired", False):
            errors.add(f"{prefix}item_code", "unknown_item", "事项不存在或已停用")
            continue
        if mode and mode not in item.modes:
            errors.add(f"{prefix}mode", "mode_not_offered", f"「{item.name}」不支持该办理模式")
        if mode == "online" and item.handling_region != deps.region:
            errors.add(f"{prefix}mode", "mode_not_offered", "全程网办只能申请本地区办理的事项")
        if mode == "proxy" and item.handling_region == deps.region:
            errors.add(f"{prefix}item_code", "own_item", "本地区事项请直接受理，无需代收代办")
        items.append(item)
        forms.append(validation.form(item.form_fields, part.get("form"), errors, prefix=prefix))
        materials.append(await _check_materials(deps, item, part.get("materials"), errors, prefix))
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
    deps: CaseDeps, item: Any, given: Any, errors: validation.Errors, prefix: str
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
                async with deps.db.read() as conn:
                    upload = await records.upload(conn, blob)
                if upload is None or not await deps.blobs.has(blob):
                    errors.add(field, "file_missing", f"「{spec.name}」的文件未上传")
                else:
                    check_file(spec, upload, field, errors)
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


async def next_case_no(deps: CaseDeps, conn: AsyncConnection) -> str:
    """The next number of this region today: ``<region>-<YYYYMMDD>-<n>``."""
    day = today_in_china(deps.clock()).strftime("%Y%m%d")
    insert = conflict_insert(conn.dialect.name)
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
    return f"{deps.region}-{day}-{number:05d}"


def _case_values(now: float) -> dict[str, Any]:
    """The columns every new case starts with."""
    return {
        "details": "{}",
        "received_at": now,
        "pauses": "[]",
        "paused": False,
        "deadline_provisional": False,
        "created_at": now,
        "updated_at": now,
        "event_count": 0,
        "head_hash": "",
    }


async def create_case(
    deps: CaseDeps,
    conn: AsyncConnection,
    actor: Actor,
    validated: dict[str, Any],
    part: int,
    *,
    case_no: str | None = None,
    bundle: tuple[int, str, int, int] | None = None,
    code: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Insert the case for part ``part`` of a validated application and record its first
    event (``receive`` on one node, ``submit`` with ``case.submit`` across two)."""
    now = deps.clock()
    item = validated["items"][part]
    materials = validated["materials"][part]
    mode = Mode(validated["mode"])
    case_no = case_no or await next_case_no(deps, conn)
    code = code or _query_code()
    applicant = validated["applicant"]
    catch_up = await _catch_up_dates(deps, item, now, materials)
    application: dict[str, Any] = {
        "form": validated["forms"][part],
        "materials": materials,
        "delivery": validated["delivery"],
        "identity_verified": validated.get("identity_verified", True),
        "received_at": china_iso(now),
    }
    if validated.get("identity"):
        application["identity"] = validated["identity"]
    if bundle is not None:
        application["bundle"] = {
            "bundle_no": bundle[1],
            "part": bundle[2],
            "parts": bundle[3],
            "name": validated["name"],
        }
    row_id = (
        await conn.execute(
            cases.insert()
            .values(
                case_no=case_no,
                xt_id=f"XT-{deps.region}-{uuid.uuid4().hex[:20]}",
                mode=str(mode),
                item_code=item.code,
                item_name=item.name,
                receiving_region=deps.region,
                handling_region=item.handling_region,
                partner_region=item.handling_region,
                status=str(Status.RECEIVED),
                status_code=PROVINCIAL_CODES[Status.RECEIVED],
                bundle_id=bundle[0] if bundle else None,
                **personal.applicant_columns(deps.sealer, applicant),
                query_hash=personal.query_hash(deps.sealer, case_no, code),
                application=json.dumps(application, ensure_ascii=False),
                **catch_up,
                **_case_values(now),
            )
            .returning(cases.c.id)
        )
    ).scalar_one()
    await records.claim_uploads(conn, [m["blob"] for m in materials if m["blob"]], now)
    row = await records.load_for_update(conn, row_id)
    assert row is not None
    event = clean(
        {
            "materials": len(materials),
            "deferred": [m["name"] for m in materials if m["status"] == "deferred"],
            "deferred_until": catch_up["deferred_until"],
            "pledged": [m["name"] for m in materials if m["status"] == "pledged"] or None,
            "identity_verified": False if application["identity_verified"] is False else None,
        }
    )
    if mode is Mode.ONLINE:
        await records.record(
            conn,
            row,
            region=deps.region,
            outbox=deps.outbox,
            actor=actor.username,
            action="receive",
            event=event,
            now=now,
            actor_name=actor.display_name,
        )
    else:
        body = {
            "case_no": case_no,
            "item_code": item.code,
            "mode": str(mode),
            "applicant": applicant,
            **application,
        }
        if actor.display_name:
            body["received_by"] = {"window": deps.window_name, "clerk": actor.display_name}
        digests = [m["blob"] for m in materials if m["blob"]]
        await records.record(
            conn,
            row,
            region=deps.region,
            outbox=deps.outbox,
            actor=actor.username,
            action="submit",
            to_status=Status.FORWARDED,
            event=event,
            envelope=records.Envelope("case.submit", body, await records.blob_refs(conn, digests)),
            now=now,
            actor_name=actor.display_name,
        )
    fresh = await records.load_for_update(conn, row_id)
    assert fresh is not None
    return records.summary(fresh, today_in_china(now)), code


async def _catch_up_dates(
    deps: CaseDeps, item: Any, now: float, materials: list[dict[str, Any]]
) -> dict[str, Any]:
    """容缺: the catch-up deadline (``deferred_days`` working days after 收件), the day its
    warning starts and the inputs a calendar load recomputes them from, as columns; the
    deadline is set on every deferred material. All None without any."""
    deferred = [m for m in materials if m["status"] == "deferred"]
    if not deferred:
        return {"deferred_until": None, "deferred_warning_from": None, "deferred_days": None}
    fields = deadlines.catch_up(
        await deps.calendar(),
        start=today_in_china(now),
        days=deps.deferred_days,
        warning_days=int(getattr(item, "warning_days", DEFAULT_WARNING_DAYS)),
    )
    for material in deferred:
        material["deferred_until"] = fields["deferred_until"]
    return fields


# -- a partner's case.submit ----------------------------------------------------------------


@registry.intake("submit")
async def submitted(deps: CaseDeps, conn: AsyncConnection, actor: Actor, env: Envelope) -> None:
    """A partner's window took an application for our item: the handling node's record.

    Its number must be the sender's own (``<sender region>-…``) and new here, so no partner
    can take a number of ours, or of a third region, and block that region's numbering."""
    body = env.body
    if not str(body["case_no"]).startswith(f"{env.iss}-"):
        raise CaseError(
            CaseErrorCode.CASE_NO_NOT_YOURS,
            "案件编号不属于发送方",
            detail=f"case_no must start with the sender's region {env.iss}-",
        )
    taken = (
        await conn.execute(
            select(cases.c.id).where(
                (cases.c.xt_id == env.xt) | (cases.c.case_no == body["case_no"])
            )
        )
    ).first()
    if taken is not None:
        raise CaseError(
            CaseErrorCode.DUPLICATE_CASE,
            "案件已存在",
            detail="a case with this xt or case_no exists",
        )
    item = await deps.items(body["item_code"])
    applicant = body["applicant"]
    now = deps.clock()
    application: dict[str, Any] = {
        k: body[k]
        for k in ("form", "materials", "delivery", "identity_verified", "received_at", "bundle")
        if k in body
    }
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
        catch_up = await _relayed_catch_up(deps, item, deferred_until)
    row_id = (
        await conn.execute(
            cases.insert()
            .values(
                case_no=body["case_no"],
                xt_id=env.xt,
                mode=body["mode"],
                item_code=body["item_code"],
                item_name=item.name if item else body["item_code"],
                receiving_region=env.iss,
                handling_region=deps.region,
                partner_region=env.iss,
                status=str(Status.FORWARDED),
                status_code=PROVINCIAL_CODES[Status.FORWARDED],
                **personal.applicant_columns(deps.sealer, applicant),
                application=json.dumps(application, ensure_ascii=False),
                **catch_up,
                **_case_values(now),
            )
            .returning(cases.c.id)
        )
    ).scalar_one()
    for blob in env.blobs:
        await remember_file(
            conn, deps.blobs, blob, allowed=filetypes.DOCUMENTS, actor=actor.username, now=now
        )
    row = await records.load_for_update(conn, row_id)
    assert row is not None
    await records.record(
        conn,
        row,
        region=deps.region,
        outbox=deps.outbox,
        now=now,
        actor=actor.username,
        action="submit",
        event=clean(
            {
                "jti": env.jti,
                "materials": len(body.get("materials", [])),
                "deferred": [
                    m["name"] for m in body.get("materials", []) if m["status"] == "deferred"
                ]
                or None,
                "pledged": [
                    m["name"] for m in body.get("materials", []) if m["status"] == "pledged"
                ]
                or None,
                "deferred_until": deferred_until,
                "by": body.get("received_by", {}).get("clerk"),
            }
        ),
    )
    if item is None or item.retired or item.handling_region != deps.region:
        row = await records.load_for_update(conn, row_id)
        assert row is not None
        await records.record(
            conn,
            row,
            actor="system",
            action="not_accept",
            to_status=Status.NOT_ACCEPTED,
            event={"reason": "unknown_item"},
            envelope=records.Envelope(
                "case.not_accepted",
                {
                    "reason": "本地区无此事项或事项已停用",
                    "legal_basis": "《行政许可法》第三十二条",
                },
            ),
            region=deps.region,
            outbox=deps.outbox,
            now=now,
        )


async def _relayed_catch_up(deps: CaseDeps, item: Any, deferred_until: str) -> dict[str, Any]:
    """容缺 on the handling node: the window's catch-up deadline as the window set it.

    The catch-up is the receiving region's business (it takes the material and holds the
    result until then): its date is the window's, never provisional and never recomputed
    here. Recounting it on our calendar would make the two nodes disagree whenever they
    have loaded different years."""
    calendar = await deps.calendar()
    lead = int(getattr(item, "warning_days", DEFAULT_WARNING_DAYS))
    until = date.fromisoformat(deferred_until)
    return {
        "deferred_until": deferred_until,
        "deferred_warning_from": calendar.subtract_working_days(until, lead).isoformat(),
    }
