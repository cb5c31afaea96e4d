"""``case.progress``: the handling region pauses (中止), resumes or extends (延期) the time
limit of a case.
"""

from __future__ import annotations

from typing import Any

from protocol.messages.fields import DISPLAY_NAME, NOTE, text
from protocol.schema import Checked, Date, Enum, Int, Obj, Schema, fail


def _progress_rule(value: dict[str, Any], path: str) -> None:
    kind = value["kind"]
    if kind == "extension" and "extension_days" not in value:
        raise fail(f"{path}.extension_days", "is required for an extension")
    only = {
        "extension_days": "extension",
        "approved_by": "extension",
        "procedure": "pause",
        "expected_days": "pause",
    }
    for name, allowed in only.items():
        if name in value and kind != allowed:
            raise fail(f"{path}.{name}", f"only for kind {allowed}")


PROGRESS = Checked(
    Obj(
        required={
            "kind": Enum("pause", "resume", "extension"),
            "reason": text(500),
            "on": Date(),
        },
        optional={
            "procedure": Enum("hearing", "testing", "expert_review", "other"),
            "expected_days": Int(1, 365),
            "extension_days": Int(1, 60),
            "approved_by": DISPLAY_NAME,
            "note": NOTE,
        },
    ),
    _progress_rule,
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.progress": PROGRESS,
}
