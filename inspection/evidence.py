"""Ending a session: the signed inspection record (勘验笔录), the sealed manifest, and the
evidence recorded on the case (``case.inspection_completed`` with every file as a blob)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from inspection.errors import InspectionError
from inspection.models import inspection_items, inspection_sessions
from node.accounts.auth import Staff
from node.cases.actor import Actor
from node.cases.ports import InspectionEvidence
from node.clock import china_iso as now_iso
from protocol.evidence import MEDIA_TYPE, NAME, sha256_hex, sign_manifest

if TYPE_CHECKING:
    from inspection.hub import InspectionHub
    from inspection.session import LiveSession

RESULTS = {"pass": "符合", "conditional": "基本符合，需整改", "fail": "不符合", "aborted": "未完成"}
CHECK_LABELS = {"pass": "符合", "fail": "不符合", "na": "不适用"}
#: The conclusions of a 云见面 (the same values, worded for a meeting).
MEETING_RESULTS = {
    "pass": "已完成，情况属实",
    "conditional": "已完成，需补充说明或材料",
    "fail": "情况不符",
    "aborted": "未完成",
}
INSPECTION_WORDS = {
    "title": "勘验笔录",
    "staff": "勘验人员",
    "site": "勘验地点",
    "result": "勘验结论",
    "findings": "勘验意见",
    "record": "笔录",
}
MEETING_WORDS = {
    "title": "云见面记录",
    "staff": "工作人员",
    "site": "地点",
    "result": "结论",
    "findings": "意见",
    "record": "记录",
}
MAX_RECORD = 5000


def _text(payload: dict[str, Any], key: str, limit: int) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InspectionError("invalid_input", f"{key} 应为不超过 {limit} 字的文字")
    return value.strip() or None


def render_record(
    live: LiveSession,
    *,
    result: str,
    record: str | None,
    findings: str | None,
    staff: Staff,
    started: float | None,
    ended: float,
    participants: list[dict[str, Any]],
) -> str:
    meeting = live.kind == "meeting"
    words = MEETING_WORDS if meeting else INSPECTION_WORDS
    labels = {"inspector": words["staff"], "applicant": "申请人"}
    lines = [
        words["title"],
        "",
        f"案件编号：{live.case_no}",
        f"会话编号：{live.id}",
        f"{words['site']}：{live.site_address or '（未填写）'}",
        f"开始时间：{now_iso(started) if started else '（未开始）'}",
        f"结束时间：{now_iso(ended)}",
        "参与人员："
        + "、".join(f"{labels.get(p['role'], p['role'])} {p['name']}" for p in participants),
    ]
    if live.checklist:
        lines += ["", "勘验要点："]
        for i, point in enumerate(live.checklist):
            entry = live.results.get(str(i)) or {}
            verdict = CHECK_LABELS.get(entry.get("result", ""), "未勘验")
            note = f"（{entry['note']}）" if entry.get("note") else ""
            lines.append(f"{i + 1}. {point} —— {verdict}{note}")
    outcome = (MEETING_RESULTS if meeting else RESULTS)[result]
    lines += ["", f"{words['result']}：{outcome}"]
    if findings:
        lines += [f"{words['findings']}：{findings}"]
    if record:
        lines += ["", f"{words['record']}：", record]
    lines += [
        "",
        f"{words['staff']}：{staff.display_name}（{staff.username}），签署于 {now_iso(ended)}",
    ]
    return "\n".join(lines) + "\n"


async def finish(
    hub: InspectionHub, live: LiveSession, staff: Staff, payload: Any
) -> dict[str, Any]:
    """End the session and record its evidence on the case. Refusals change nothing."""
    if not isinstance(payload, dict):
        raise InspectionError("invalid_input")
    result = payload.get("result")
    if result not in RESULTS:
        raise InspectionError("invalid_input", "勘验结论应为 pass、conditional、fail 或 aborted")
    record = _text(payload, "record", MAX_RECORD)
    findings = _text(payload, "findings", 2000)
    note = _text(payload, "note", 1000)
    if record is None and result != "aborted":
        raise InspectionError("record_required")
    # A 勘验笔录 is signed by an inspector; a 云见面 may be ended by any staff member taking
    # part who may complete it (an approver too: docs/cases.md).
    if live.kind != "meeting" and staff.role != "inspector":
        raise InspectionError("not_a_participant", "只有勘验人员可以结束并签署勘验笔录")
    if not hub.cases.may(staff.role, "complete_inspection"):
        raise InspectionError("not_a_participant", "您的岗位不能结束并签署本次记录")
    if live.ended:
        raise InspectionError("session_ended")
    live.ended = True
    try:
        return await _finish(hub, live, staff, result, record, findings, note)
    except BaseException:
        live.ended = False
        raise


async def _finish(
    hub: InspectionHub,
    live: LiveSession,
    staff: Staff,
    result: str,
    record: str | None,
    findings: str | None,
    note: str | None,
) -> dict[str, Any]:
    await live.broadcast({"type": "ended", "result": result})
    await live.close_all("ended")
    await live.store_leftover_segments()
    ended = time.time()
    async with hub.db.read() as conn:
        items = (
            await conn.execute(
                select(inspection_items)
                .where(inspection_items.c.session_id == live.id)
                .order_by(inspection_items.c.id)
            )
        ).all()
    participants = [
        {
            "role": p.role,
            "name": p.name,
            "joined_at": now_iso(p.joined_at) if p.joined_at else None,
            "left_at": now_iso(p.left_at) if p.left_at else None,
            "connections": p.connections,
        }
        for p in live.participants.values()
    ]
    # Planned people who never joined: staff are matched by username (a joined participant
    # carries their display name, the plan may hold an older one), the applicant by role.
    joined_staff = {p.username for p in live.participants.values() if p.username}
    joined_roles = {p.role for p in live.participants.values() if not p.username}
    for planned in live.planned:
        username = planned.get("username")
        if (username in joined_staff) if username else (planned["role"] in joined_roles):
            continue
        participants.append({"role": planned["role"], "name": planned["name"], "joined_at": None})
    text = render_record(
        live,
        result=result,
        record=record,
        findings=findings,
        staff=staff,
        started=live.started_at,
        ended=ended,
        participants=participants,
    )
    record_bytes = text.encode("utf-8")
    record_sha = await hub.blobs.put_bytes(record_bytes)
    files: list[dict[str, Any]] = []
    for item in items:
        data = json.loads(item.data)
        entry: dict[str, Any] = {
            "kind": item.kind,
            "name": item.name,
            "media_type": item.media_type,
            "sha256": item.sha256,
            "size": item.size,
            "taken_at": now_iso(item.taken_at),
        }
        if item.kind == "recording":
            entry["duration_s"] = data.get("duration_s")
            entry["video_frames"] = data.get("video_frames")
            entry["width"], entry["height"] = data.get("width"), data.get("height")
        else:
            entry.update({k: data.get(k) for k in ("width", "height", "location", "note")})
            entry["checklist_index"] = data.get("checklist_index")
            if entry["location"]:
                entry["location"] = {
                    **entry["location"],
                    "at": now_iso(entry["location"]["at"]),
                }
        files.append(entry)
    record_name = "云见面记录.txt" if live.kind == "meeting" else "勘验笔录.txt"
    files.append(
        {
            "kind": "record",
            "name": record_name,
            "media_type": "text/plain",
            "sha256": record_sha,
            "size": len(record_bytes),
            "taken_at": now_iso(ended),
        }
    )
    manifest = {
        "case": {"case_no": live.case_no, "xt_id": live.xt_id},
        "session": {
            "id": live.id,
            "kind": live.kind,
            "scheduled_at": now_iso(live.scheduled_at),
            "started_at": now_iso(live.started_at) if live.started_at else None,
            "ended_at": now_iso(ended),
            "site_address": live.site_address,
        },
        "participants": participants,
        "files": files,
        "checklist": [
            {"point": point, **(live.results.get(str(i)) or {"result": None})}
            for i, point in enumerate(live.checklist)
        ],
        "locations": [{**loc, "at": now_iso(loc["at"])} for loc in live.locations],
        "timeline": [{**e, "at": now_iso(e["at"])} for e in live.timeline],
        "record": {
            "text": text,
            "findings": findings,
            "result": result,
            "inspector": {"name": staff.display_name, "username": staff.username},
            "signed_at": now_iso(ended),
        },
    }
    identity = hub.identity()
    sealed = sign_manifest(
        manifest, identity.private_key, kid=identity.kid, region=hub.region, now=ended
    )
    manifest_sha = await hub.blobs.put_bytes(sealed)
    assert manifest_sha == sha256_hex(sealed)
    body_files: list[dict[str, Any]] = []
    blobs: list[dict[str, Any]] = []
    listed: set[str] = set()
    for entry in files:
        if entry["sha256"] in listed:
            continue  # the same bytes twice (never for snapshots, which carry their time)
        listed.add(entry["sha256"])
        wire: dict[str, Any] = {"blob": entry["sha256"], "kind": entry["kind"]}
        if entry["kind"] == "recording":
            wire["duration_s"] = round(float(entry.get("duration_s") or 0))
        if entry["kind"] in ("recording", "snapshot"):
            wire["taken_at"] = entry["taken_at"]
        body_files.append(wire)
        blobs.append(
            {
                "sha256": entry["sha256"],
                "size": entry["size"],
                "media_type": entry["media_type"],
                "name": entry["name"],
            }
        )
    body_files.append({"blob": manifest_sha, "kind": "manifest"})
    blobs.append(
        {"sha256": manifest_sha, "size": len(sealed), "media_type": MEDIA_TYPE, "name": NAME}
    )
    body: dict[str, Any] = {
        "session_id": live.id,
        "completed_at": now_iso(ended),
        "result": result,
        "files": body_files,
        "inspector": staff.display_name,
    }
    if live.started_at:
        body["started_at"] = now_iso(live.started_at)
    if findings:
        body["findings"] = findings
    if note:
        body["note"] = note
    summary = {"manifest": manifest_sha, "files": files, "result": result, "body": body}
    async with hub.db.write() as conn:
        await hub.cases.act_in(
            conn,
            Actor.of_staff(staff),
            live.case_id,
            "complete_inspection",
            InspectionEvidence(
                body=body, blobs=blobs, manifest_sha256=manifest_sha, kind=live.kind
            ),
        )
        await conn.execute(
            update(inspection_sessions)
            .where(inspection_sessions.c.id == live.id)
            .values(
                status="ended",
                ended_at=ended,
                result=result,
                evidence=json.dumps(summary, ensure_ascii=False),
            )
        )
    await hub.forget(live)
    return summary
