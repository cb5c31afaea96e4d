"""``case.dispatched`` and ``case.delivered``: the receiving region hands the result over, by
mail or at the window.
"""

from __future__ import annotations

from typing import Any

from protocol.messages.fields import FILE_REF, NOTE, line
from protocol.schema import Checked, DateTime, Enum, Obj, Schema, Str, fail


def _dispatched_rule(value: dict[str, Any], path: str) -> None:
    if value["method"] == "mail":
        for name in ("courier", "tracking_no"):
            if name not in value:
                raise fail(f"{path}.{name}", "is required for mail")
    else:
        for name in ("courier", "tracking_no"):
            if name in value:
                raise fail(f"{path}.{name}", "only for mail")


DISPATCHED = Checked(
    Obj(
        required={"method": Enum("mail", "window"), "dispatched_at": DateTime()},
        optional={
            "courier": line(50),
            "tracking_no": Str(min_len=4, max_len=40, pattern=r"[A-Za-z0-9-]+"),
            "pickup_location": line(200),
            "note": NOTE,
        },
    ),
    _dispatched_rule,
)

DELIVERED = Obj(
    required={"delivered_at": DateTime(), "method": Enum("mail", "window")},
    optional={"recipient": line(100), "proof": FILE_REF, "note": NOTE},
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.dispatched": DISPATCHED,
    "case.delivered": DELIVERED,
}
