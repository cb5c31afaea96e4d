"""``case.decided``: the handling region approves (准予) or denies (不予) the application."""

from __future__ import annotations

from typing import Any

from protocol.messages.fields import DISPLAY_NAME, DOCUMENTS, line, text
from protocol.schema import Checked, Date, DateTime, Enum, Obj, Schema, fail


def _decided_rule(value: dict[str, Any], path: str) -> None:
    if value["outcome"] == "denied":
        if "reason" not in value:
            raise fail(f"{path}.reason", "is required when denied")
        for name in ("certificate_no", "valid_until"):
            if name in value:
                raise fail(f"{path}.{name}", "only when approved")
    elif not value["documents"]:
        raise fail(f"{path}.documents", "an approval carries at least one document")


DECIDED = Checked(
    Obj(
        required={
            "outcome": Enum("approved", "denied"),
            "decided_at": DateTime(),
            "documents": DOCUMENTS,
        },
        optional={
            "reason": text(1000),
            "legal_basis": text(500),
            "decision_no": line(64),
            "certificate_no": line(100),
            "valid_until": Date(),
            "approver": DISPLAY_NAME,
        },
    ),
    _decided_rule,
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.decided": DECIDED,
}
