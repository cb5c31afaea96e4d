"""How the pages speak of a case's video session (``details.inspection``): a site inspection
(云端勘验) or a video meeting (云见面), and whether it is over.

``case.inspection_scheduled`` carries no kind: a 云见面 is scheduled with the note "云见面"
(node/cases/actions/inspection.py), and once it is over its verified manifest says so too.
The session is over once its evidence is recorded on the case (``details.inspection.evidence``,
written in the transaction that ends the session, and at the partner when it arrives).
"""

from __future__ import annotations

from typing import Any

#: A session's conclusion, by kind (the console's values; docs/inspection.md).
INSPECTION_RESULTS = {
    "pass": "符合",
    "conditional": "基本符合，需整改",
    "fail": "不符合",
    "aborted": "未完成",
}
MEETING_RESULTS = {
    "pass": "已完成，情况属实",
    "conditional": "已完成，需补充说明或材料",
    "fail": "情况不符",
    "aborted": "未完成",
}

#: The files a session leaves on the case (node/cases/actions/inspection.py), in words.
EVIDENCE_KINDS = {
    "recording": "录像",
    "snapshot": "截图",
    "record": "勘验笔录",
    "manifest": "证据清单",
}


def is_meeting(schedule: dict[str, Any] | None) -> bool:
    """Whether ``details.inspection`` is a 云见面."""
    if not schedule:
        return False
    if schedule.get("kind") == "meeting":
        return True
    note = schedule.get("note")
    if isinstance(note, str) and note.startswith("云见面"):
        return True
    evidence = schedule.get("evidence") or {}
    manifest = (evidence.get("verified") or {}).get("manifest_body") or {}
    return bool((manifest.get("session") or {}).get("kind") == "meeting")


def is_over(schedule: dict[str, Any] | None) -> bool:
    """Whether the session has ended with its evidence recorded."""
    return bool(schedule and schedule.get("evidence"))


def words(schedule: dict[str, Any] | None) -> dict[str, Any]:
    """The words the pages use for this session."""
    meeting = is_meeting(schedule)
    return {
        "meeting": meeting,
        "over": is_over(schedule),
        "name": "云见面" if meeting else "云端勘验",
        "video": "视频会面" if meeting else "视频勘验",
        "staff": "工作人员" if meeting else "勘验人员",
        "time": "见面时间" if meeting else "勘验时间",
        "site": "地点" if meeting else "勘验地点",
        "result": "见面结论" if meeting else "勘验结果",
        "findings": "意见" if meeting else "勘验意见",
        "results": MEETING_RESULTS if meeting else INSPECTION_RESULTS,
    }


def evidence_kinds(schedule: dict[str, Any] | None) -> dict[str, str]:
    """The evidence files' kinds in words: a 云见面 leaves a 云见面记录, not a 勘验笔录."""
    if is_meeting(schedule):
        return {**EVIDENCE_KINDS, "record": "云见面记录"}
    return EVIDENCE_KINDS


#: What a 云见面 changes in the case pages' words: the state's name and the two actions'.
MEETING_STATUS_WORDS = {"inspection": "云见面中"}
MEETING_ACTION_WORDS = {"schedule_inspection": "安排云见面", "complete_inspection": "完成云见面"}


def status_words(schedule: dict[str, Any] | None) -> dict[str, str]:
    """Status names that differ from the lifecycle's for this session (empty unless 云见面)."""
    return MEETING_STATUS_WORDS if is_meeting(schedule) else {}


def action_words(labels: dict[str, str], schedule: dict[str, Any] | None) -> dict[str, str]:
    """The timeline's action names, with a 云见面's own where the session is one."""
    return {**labels, **MEETING_ACTION_WORDS} if is_meeting(schedule) else labels
