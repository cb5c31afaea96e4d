"""补正 (one notice listing every missing or faulty material; the clock pauses after 受理) and
容缺补齐 (deferred materials caught up at the window before the result is handed over)."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from node.cases import records, validation
from node.cases.actions import registry
from node.cases.actions.context import Step, check_file, clean, optional_text
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import Status
from node.clock import CHINA
from node.storage import filetypes
from protocol.catalog import DEFAULT_SUPPLEMENT_DEADLINE_DAYS
from protocol.envelope import Envelope

MAX_ENTRIES = 50


def new_supplement(details: dict[str, Any], notice: dict[str, Any]) -> dict[str, Any]:
    """``details`` with ``notice`` as the current 补正 notice (``supplement``, which the rest
    of the code reads) and the one it replaces kept in ``supplement_history``, latest first."""
    if details.get("supplement"):
        details["supplement_history"] = [
            details["supplement"],
            *details.get("supplement_history", []),
        ]
    details["supplement"] = notice
    return details


@registry.staff("request_supplement")
async def request_supplement(step: Step, payload: dict[str, Any]) -> None:
    errors = validation.Errors()
    items = payload.get("items")
    notice: list[dict[str, Any]] = []
    if not isinstance(items, list) or not items:
        errors.add("items", "required", "补正通知应一次列明全部需补正的材料")
    else:
        for index, entry in enumerate(items[:MAX_ENTRIES]):
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
                clean(
                    {
                        "material_code": code if isinstance(code, str) else None,
                        "name": name,
                        "requirement": requirement,
                    }
                )
            )
    item = await step.item()
    days = int(
        getattr(item, "supplement_deadline_days", DEFAULT_SUPPLEMENT_DEADLINE_DAYS)
        or DEFAULT_SUPPLEMENT_DEADLINE_DAYS
    )
    today = step.today()
    deadline = validation.iso_date(payload, "deadline", errors, label="补正期限")
    if deadline is not None and deadline <= today:
        errors.add("deadline", "deadline_not_after_today", "补正期限应晚于今天")
    errors.raise_if_any()
    if deadline is None:
        deadline = (await step.deps.calendar()).add_working_days(today, days).date
    details = new_supplement(
        step.details,
        {
            "items": notice,
            "deadline": deadline.isoformat(),
            "requested_on": today.isoformat(),
            "resume_status": step.row.status,
        },
    )
    changes: dict[str, Any] = {"details": json.dumps(details, ensure_ascii=False)}
    if step.row.status == Status.ACCEPTED:
        changes.update(step.open_pause(today, "补正"))
    await step.write(
        to_status=Status.SUPPLEMENT_PENDING,
        changes=changes,
        event={"items": len(notice), "deadline": deadline.isoformat()},
        envelope=records.Envelope(
            "case.supplement_requested",
            {
                "items": notice,
                "deadline": deadline.isoformat(),
                "requested_on": today.isoformat(),
                "approver": step.actor.name,
            },
        ),
    )


@registry.partner("request_supplement")
async def supplement_requested(step: Step, env: Envelope) -> None:
    details = new_supplement(step.details, {**env.body, "resume_status": step.row.status})
    changes: dict[str, Any] = {"details": json.dumps(details, ensure_ascii=False)}
    if step.row.status == Status.ACCEPTED:
        changes.update(step.open_pause(date.fromisoformat(env.body["requested_on"]), "补正"))
    await step.write(
        to_status=Status.SUPPLEMENT_PENDING,
        changes=changes,
        event={"items": len(env.body["items"]), "deadline": env.body.get("deadline")},
    )


@registry.staff("supplement")
async def supplement(step: Step, payload: dict[str, Any]) -> None:
    errors = validation.Errors()
    given = payload.get("materials")
    materials = []
    if not isinstance(given, list) or not given:
        errors.add("materials", "required", "请上传补正材料")
    else:
        for index, entry in enumerate(given[:MAX_ENTRIES]):
            entry = entry if isinstance(entry, dict) else {}
            name = validation.text(
                entry, "name", errors, label="材料名称", path=f"materials[{index}].name"
            )
            blob = entry.get("blob")
            if await step.upload(blob) is None:
                errors.add(f"materials[{index}].blob", "file_missing", "请上传文件")
                continue
            code = entry.get("code")
            materials.append(
                clean({"code": code if isinstance(code, str) else None, "name": name, "blob": blob})
            )
    note = optional_text(payload, "note", "说明", 500)
    errors.raise_if_any()
    await _supplemented(step, materials, note, send=True)


@registry.partner("supplement")
async def supplemented(step: Step, env: Envelope) -> None:
    await step.remember_partner_files(filetypes.DOCUMENTS)
    await _supplemented(
        step,
        env.body["materials"],
        env.body.get("note"),
        send=False,
        supplemented_at=env.body.get("supplemented_at"),
    )


async def _supplemented(
    step: Step,
    materials: list[dict[str, Any]],
    note: str | None,
    *,
    send: bool,
    supplemented_at: str | None = None,
) -> None:
    """The 补正 materials are in: the pause ends on the day the window took them (the
    date of ``supplemented_at``, which travels, so both nodes count the same pause)."""
    details = step.details
    notice = details.get("supplement") or {}
    resume = Status(notice.get("resume_status", Status.FORWARDED))
    moment = (
        datetime.fromisoformat(supplemented_at)
        if supplemented_at
        else datetime.fromtimestamp(step.now(), CHINA)
    )
    supplied_on = moment.astimezone(CHINA).date()
    notice["supplied"] = materials
    notice["supplied_on"] = supplied_on.isoformat()
    details["supplement"] = notice
    changes = {"details": json.dumps(details, ensure_ascii=False)}
    changes.update(await step.close_pause_and_recompute(supplied_on, reason="补正"))
    envelope = None
    if send:
        envelope = records.Envelope(
            "case.supplemented",
            clean(
                {
                    "materials": materials,
                    "supplemented_at": moment.isoformat(timespec="seconds"),
                    "clerk": step.actor.name,
                    "note": note,
                }
            ),
            await step.blob_refs([m["blob"] for m in materials]),
        )
    await step.write(
        to_status=resume,
        changes=changes,
        event={"materials": len(materials)},
        envelope=envelope,
        files=[m["blob"] for m in materials] if send else None,
    )


def _outstanding(step: Step) -> dict[str, dict[str, Any]]:
    return {
        m["code"]: m
        for m in records.deferred_detail(json.loads(step.row.application), step.details)
        if not m["caught_up"]
    }


@registry.staff("catch_up")
async def catch_up(step: Step, payload: dict[str, Any]) -> None:
    """容缺补齐: the window takes deferred materials; relayed as case.supplemented with
    ``deferred: true``. Each is checked against the item's file types and size."""
    outstanding = _outstanding(step)
    if not outstanding:
        raise CaseError(CaseErrorCode.NOTHING_DEFERRED, "本案没有待补齐的容缺材料")
    item = await step.item()
    errors = validation.Errors()
    given = payload.get("materials")
    materials: list[dict[str, Any]] = []
    if not isinstance(given, list) or not given:
        errors.add("materials", "required", "请上传需补齐的容缺材料")
        given = []
    seen: set[str] = set()
    for index, entry in enumerate(given[:MAX_ENTRIES]):
        entry = entry if isinstance(entry, dict) else {}
        code = entry.get("code")
        path = f"materials[{index}]"
        if not isinstance(code, str) or code not in outstanding or code in seen:
            errors.add(f"{path}.code", "not_deferred", "该材料不是本案待补齐的容缺材料")
            continue
        seen.add(code)
        blob = entry.get("blob")
        upload = await step.upload(blob)
        if upload is None:
            errors.add(f"{path}.blob", "file_missing", "请上传文件")
            continue
        spec = item.material(code) if hasattr(item, "material") else None
        if not check_file(spec, upload, f"{path}.blob", errors):
            continue
        materials.append({"code": code, "name": outstanding[code]["name"], "blob": blob})
    note = optional_text(payload, "note", "说明", 500)
    errors.raise_if_any()
    body = clean(
        {
            "materials": materials,
            "deferred": True,
            "supplemented_at": step.now_iso(),
            "clerk": step.actor.name,
            "note": note,
        }
    )
    refs = await step.blob_refs([m["blob"] for m in materials])
    await _caught_up(step, body, envelope=records.Envelope("case.supplemented", body, refs))


@registry.partner("catch_up")
async def caught_up(step: Step, env: Envelope) -> None:
    if not {m["code"] for m in env.body["materials"]} <= set(_outstanding(step)):
        raise CaseError(
            CaseErrorCode.NOT_DEFERRED,
            "该材料不是本案待补齐的容缺材料",
            detail="a material that is not outstanding 容缺",
        )
    await step.remember_partner_files(filetypes.DOCUMENTS)
    await _caught_up(step, env.body, envelope=None)


async def _caught_up(
    step: Step, body: dict[str, Any], *, envelope: records.Envelope | None
) -> None:
    """Record caught-up 容缺 materials; the catch-up deadline ends with the last one."""
    details = step.details
    caught = details.setdefault("deferred", {}).setdefault("materials", {})
    on = step.today().isoformat()
    for material in body["materials"]:
        caught[material["code"]] = {"blob": material["blob"], "on": on}
    still = [
        m
        for m in records.deferred_detail(json.loads(step.row.application), details)
        if not m["caught_up"]
    ]
    changes: dict[str, Any] = {"details": json.dumps(details, ensure_ascii=False)}
    if not still:
        changes.update(deferred_until=None, deferred_warning_from=None, deferred_provisional=False)
    event = clean(
        {
            "materials": [m["name"] for m in body["materials"]],
            "outstanding": len(still),
            "overdue": bool(step.row.deferred_until and on > step.row.deferred_until) or None,
            "by": body.get("clerk"),
        }
    )
    await step.write(
        changes=changes,
        event=event,
        envelope=envelope,
        files=[m["blob"] for m in body["materials"]] if envelope is not None else None,
    )
