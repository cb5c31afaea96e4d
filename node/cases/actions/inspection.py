"""云端勘验 and 云见面 as the case sees them: scheduling a video session (through the
``InspectionScheduler`` port), the signed evidence of a finished one (handed over by the
inspection console, never by the JSON API), and a partner's evidence checked before it is
shown (every digest, and the manifest's signature with the partner's trusted key)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from node.cases import records, validation
from node.cases.actions import registry
from node.cases.actions.context import Step, clean, remember_file
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import Status
from node.cases.ports import InspectionEvidence, SessionPlan
from node.storage import filetypes
from node.storage.blobs import BlobStore
from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.evidence import EvidenceError, check_files, verify_manifest


@registry.staff("schedule_inspection")
async def schedule_inspection(step: Step, payload: dict[str, Any]) -> None:
    row = step.row
    errors = validation.Errors()
    when = validation.iso_datetime(payload, "scheduled_at", errors, label="勘验时间")
    kind = payload.get("kind", "inspection")
    if kind not in ("inspection", "meeting"):
        errors.add("kind", "invalid_choice", "类型应为 inspection（云端勘验）或 meeting（云见面）")
    item = await step.item()
    points = getattr(getattr(item, "inspection", None), "points", None) or []
    checklist = [] if kind == "meeting" else (payload.get("checklist") or list(points))
    if not isinstance(checklist, list) or not all(isinstance(c, str) for c in checklist):
        errors.add("checklist", "invalid_type", "勘验要点应为文字列表")
    duration = payload.get("duration_minutes")
    if duration is not None and (
        not isinstance(duration, int) or isinstance(duration, bool) or not 5 <= duration <= 480
    ):
        errors.add("duration_minutes", "invalid_range", "计划时长应为 5 到 480 分钟")
    inspectors = payload.get("inspectors") or [step.actor.username]
    if not isinstance(inspectors, list) or not all(
        isinstance(u, str) and 0 < len(u) <= 64 for u in inspectors
    ):
        errors.add("inspectors", "invalid_type", "勘验人员应为用户名列表")
    site = validation.text(
        payload, "site_address", errors, label="勘验地点", max_len=300, required=False
    )
    note = validation.text(payload, "note", errors, label="说明", max_len=1000, required=False)
    errors.raise_if_any()
    assert when is not None
    scheduler = step.deps.inspections
    if scheduler is None:  # a node built without the video module
        raise CaseError(CaseErrorCode.USE_INSPECTION_CONSOLE, "本节点未启用云端勘验")
    session_id = str(uuid.uuid4())
    # Staff take part under their display name; the session matches them by username.
    names = await scheduler.display_names(step.conn, inspectors)
    staff = [{"role": "inspector", "name": names.get(u, u), "username": u} for u in inspectors]
    participants = [*staff, {"role": "applicant", "name": row.applicant_name}]
    token = await scheduler.open_session(
        step.conn,
        SessionPlan(
            case_id=row.id,
            xt_id=row.xt_id,
            case_no=row.case_no,
            session_id=session_id,
            kind=kind,
            scheduled_at=when.timestamp(),
            duration_minutes=duration,
            checklist=checklist,
            participants=participants,
            site_address=site,
            created_by=step.actor.username,
        ),
        now=step.now(),
    )
    schedule = clean(
        {
            "session_id": session_id,
            "scheduled_at": when.isoformat(),
            "join_url": f"{step.deps.base_url}/inspection/{session_id}/join?token={token}",
            "checklist": checklist,
            "participants": [{"role": p["role"], "name": p["name"]} for p in participants],
            "join_token": token,
            "duration_minutes": duration,
            "site_address": site,
            "note": note or ("云见面" if kind == "meeting" else None),
        }
    )
    details = step.details
    details["inspection"] = schedule
    await step.write(
        to_status=Status.INSPECTION,
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event={"scheduled_at": schedule["scheduled_at"], "session_id": session_id},
        envelope=records.Envelope("case.inspection_scheduled", schedule),
    )


@registry.partner("schedule_inspection")
async def inspection_scheduled(step: Step, env: Envelope) -> None:
    details = step.details
    details["inspection"] = env.body
    await step.write(
        to_status=Status.INSPECTION,
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event={"scheduled_at": env.body.get("scheduled_at")},
    )


@registry.staff("complete_inspection")
async def complete_inspection(step: Step, payload: Any) -> None:
    """Record the signed evidence on the case and send it to the other region. Only the
    inspection console hands an ``InspectionEvidence`` over; a JSON payload is refused."""
    if not isinstance(payload, InspectionEvidence):
        raise CaseError(
            CaseErrorCode.USE_INSPECTION_CONSOLE, "请在云端勘验控制台结束并签署勘验笔录"
        )
    if payload.kind != "meeting" and step.actor.role != "inspector":
        raise CaseError(CaseErrorCode.FORBIDDEN, "只有勘验人员可以签署勘验笔录")
    body = payload.body
    for blob in payload.blobs:
        await _remember_own(step, blob)
    details = step.details
    details.setdefault("inspection", {})["evidence"] = body
    await step.write(
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event={
            "session_id": body["session_id"],
            "result": body["result"],
            "manifest": payload.manifest_sha256,
            "files": len(body["files"]),
        },
        envelope=records.Envelope("case.inspection_completed", body, payload.blobs),
    )


async def _remember_own(step: Step, blob: dict[str, Any]) -> None:
    await remember_file(
        step.conn,
        step.deps.blobs,
        blob,
        allowed=filetypes.EVIDENCE,
        actor=step.actor.username,
        now=step.now(),
    )


@registry.partner("complete_inspection")
async def inspection_completed(step: Step, env: Envelope) -> None:
    verified = await _verify_evidence(step, env)
    await step.remember_partner_files(filetypes.EVIDENCE)
    details = step.details
    details.setdefault("inspection", {})["evidence"] = {**env.body, "verified": verified}
    await step.write(
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event={"manifest": verified["manifest"]},
    )


async def _verify_evidence(step: Step, env: Envelope) -> dict[str, Any]:
    """Check a partner's evidence package (CaseError with a stable code otherwise); returns
    what the receiving node shows as verified."""
    body = env.body
    blobs = step.deps.blobs
    manifests = [f for f in body["files"] if f["kind"] == "manifest"]
    try:
        stored = {
            f["blob"]: await _rehash(blobs, f["blob"])
            for f in body["files"]
            if f["kind"] != "manifest"
        }
        manifest_digest = manifests[0]["blob"]
        data = await blobs.read_bytes(manifest_digest)
        if hashlib.sha256(data).hexdigest() != manifest_digest:
            raise EvidenceError("evidence_digest_mismatch", "manifest file differs")
        manifest = verify_manifest(data, issuer=env.iss, keys=step.deps.partner_keys)
        if any(v is None for v in stored.values()):
            raise EvidenceError("evidence_digest_mismatch", "a file does not match its digest")
        check_files(manifest, body["session_id"], body["files"], stored)  # type: ignore[arg-type]
    except EvidenceError as exc:
        raise CaseError(CaseErrorCode(exc.code), "勘验证据未通过校验", detail=exc.detail) from None
    except OSError:
        raise CaseError(
            CaseErrorCode.EVIDENCE_DIGEST_MISMATCH, "勘验证据不完整", detail="a file is missing"
        ) from None
    except ProtocolError:  # a "manifest" too large to be one
        raise CaseError(
            CaseErrorCode.EVIDENCE_DIGEST_MISMATCH,
            "勘验证据未通过校验",
            detail="manifest file too large",
        ) from None
    return {"manifest": manifest_digest, "verified_at": step.now(), "manifest_body": manifest}


async def _rehash(blobs: BlobStore, digest: str) -> int | None:
    """The size of the stored file if its bytes hash to ``digest``, else None."""
    h = hashlib.sha256()
    size = 0
    async for chunk in blobs.read_chunks(digest):
        h.update(chunk)
        size += len(chunk)
    return size if h.hexdigest() == digest else None
