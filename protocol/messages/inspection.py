"""``case.inspection_scheduled`` and ``case.inspection_completed``: the video inspection (远程
勘验) the handling region holds, and its evidence files.
"""

from __future__ import annotations

from typing import Any

from protocol.messages.fields import DISPLAY_NAME, NOTE, SHA256, UUID, line, text
from protocol.schema import Checked, DateTime, Enum, Int, List, Obj, Schema, Str, fail


def _scheduled_rule(value: dict[str, Any], path: str) -> None:
    if not any(p["role"] == "inspector" for p in value["participants"]):
        raise fail(f"{path}.participants", "must name at least one inspector")


INSPECTION_SCHEDULED = Checked(
    Obj(
        required={
            "session_id": UUID,
            "scheduled_at": DateTime(),
            "join_url": Str(min_len=10, max_len=2000, pattern=r"https?://[!-~]+"),
            "checklist": List(line(200), max_items=100),
            "participants": List(
                Obj(
                    required={
                        "role": Enum("inspector", "applicant", "agent", "clerk", "expert", "other"),
                        "name": DISPLAY_NAME,
                    }
                ),
                min_items=1,
                max_items=20,
            ),
        },
        optional={
            "join_token": Str(min_len=4, max_len=512, pattern=r"[A-Za-z0-9._~-]+"),
            "duration_minutes": Int(5, 480),
            "site_address": line(300),
            "note": NOTE,
        },
    ),
    _scheduled_rule,
)


def _completed_rule(value: dict[str, Any], path: str) -> None:
    kinds = [f["kind"] for f in value["files"]]
    if kinds.count("manifest") != 1:
        raise fail(f"{path}.files", "must hold exactly one file of kind manifest")
    if value["result"] != "aborted" and "record" not in kinds:
        raise fail(f"{path}.files", "must hold the signed record unless the result is aborted")
    for index, entry in enumerate(value["files"]):
        if "duration_s" in entry and entry["kind"] != "recording":
            raise fail(f"{path}.files[{index}].duration_s", "only for a recording")


INSPECTION_FILE = Obj(
    required={"blob": SHA256, "kind": Enum("recording", "snapshot", "record", "manifest")},
    optional={"duration_s": Int(0, 86_400), "taken_at": DateTime()},
)

INSPECTION_COMPLETED = Checked(
    Obj(
        required={
            "session_id": UUID,
            "completed_at": DateTime(),
            "result": Enum("pass", "conditional", "fail", "aborted"),
            "files": List(INSPECTION_FILE, min_items=1, max_items=200),
        },
        optional={
            "started_at": DateTime(),
            "inspector": DISPLAY_NAME,
            "findings": text(2000),
            "note": NOTE,
        },
    ),
    _completed_rule,
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.inspection_scheduled": INSPECTION_SCHEDULED,
    "case.inspection_completed": INSPECTION_COMPLETED,
}
