"""``case.supplement_requested`` and ``case.supplemented``: the handling region asks for
materials (补正), the receiving region sends them, or catches up deferred (容缺) ones.
"""

from __future__ import annotations

from typing import Any

from protocol.messages.fields import (
    CODE,
    DISPLAY_NAME,
    DOCUMENTS,
    NOTE,
    SHA256,
    line,
    not_before,
    text,
)
from protocol.schema import Bool, Checked, Date, DateTime, List, Obj, Schema, fail

SUPPLEMENT_ITEM = Obj(
    required={"name": line(200), "requirement": text(500)},
    optional={"material_code": CODE},
)

SUPPLEMENT_REQUESTED = Checked(
    Obj(
        required={
            "items": List(SUPPLEMENT_ITEM, min_items=1, max_items=50),
            "deadline": Date(),
            "requested_on": Date(),
        },
        optional={
            "notice_no": line(64),
            "approver": DISPLAY_NAME,
            "documents": DOCUMENTS,
            "note": NOTE,
        },
    ),
    not_before("deadline", "requested_on"),
)


def _supplemented_rule(value: dict[str, Any], path: str) -> None:
    if value.get("deferred"):
        for index, material in enumerate(value["materials"]):
            if "code" not in material:
                raise fail(f"{path}.materials[{index}].code", "is required for a deferred material")


SUPPLEMENTED = Checked(
    Obj(
        required={
            "materials": List(
                Obj(required={"name": line(200), "blob": SHA256}, optional={"code": CODE}),
                min_items=1,
                max_items=50,
            )
        },
        optional={
            "supplemented_at": DateTime(),
            "note": NOTE,
            # True: 容缺 materials caught up (each names its catalogue code), not a 补正 answer.
            "deferred": Bool(),
            "clerk": DISPLAY_NAME,
        },
    ),
    _supplemented_rule,
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.supplement_requested": SUPPLEMENT_REQUESTED,
    "case.supplemented": SUPPLEMENTED,
}
