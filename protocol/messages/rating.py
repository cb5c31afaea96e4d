"""``case.rated`` and ``case.rectified``: the applicant's rating (好差评) and the handling
region's rectification (整改) of a poor one.
"""

from __future__ import annotations

from typing import Any

from protocol.messages.fields import DISPLAY_NAME, NOTE, UUID, text
from protocol.schema import Bool, Checked, DateTime, Enum, Int, Obj, Schema, fail


def _rated_rule(value: dict[str, Any], path: str) -> None:
    if value["level"] <= 2 and "comment" not in value:
        raise fail(f"{path}.comment", "is required for a level 1 or 2 rating")


RATED = Checked(
    Obj(
        required={
            "rating_id": UUID,
            "level": Int(1, 5),
            "stage": Enum("accept", "decide"),
            "channel": Int(1, 7),
            "real_name": Bool(),
            "rated_at": DateTime(),
        },
        optional={"comment": text(1000)},
    ),
    _rated_rule,
)

RECTIFIED = Obj(
    required={
        "rating_id": UUID,
        "rectification": text(2000),
        "rectified_at": DateTime(),
    },
    optional={
        "follow_up": Obj(
            required={
                "at": DateTime(),
                "by": DISPLAY_NAME,
                "result": text(1000),
                "satisfied": Bool(),
            },
            optional={"channel": Enum("phone", "sms", "visit", "online")},
        ),
        "note": NOTE,
    },
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.rated": RATED,
    "case.rectified": RECTIFIED,
}
