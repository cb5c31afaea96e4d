"""``case.accepted`` and ``case.not_accepted``: the handling region accepts (受理) or refuses
(不予受理) a case.
"""

from __future__ import annotations

from protocol.messages.fields import DISPLAY_NAME, DOCUMENTS, NOTE, line, not_before, text
from protocol.schema import Bool, Checked, Date, DateTime, Int, Obj, Schema

ACCEPTED = Checked(
    Obj(
        required={
            "accepted_on": Date(),
            "time_limit_days": Int(1, 365),
            "promised_date": Date(),
            "approver": DISPLAY_NAME,
        },
        optional={
            "accepted_at": DateTime(),
            "provisional": Bool(),
            "warning_days": Int(0, 60),
            "notice_no": line(64),
            "documents": DOCUMENTS,
            "note": NOTE,
        },
    ),
    not_before("promised_date", "accepted_on"),
)

NOT_ACCEPTED = Obj(
    required={"reason": text(1000)},
    optional={
        "legal_basis": text(500),
        "not_accepted_at": DateTime(),
        "approver": DISPLAY_NAME,
        "notice_no": line(64),
        "documents": DOCUMENTS,
    },
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.accepted": ACCEPTED,
    "case.not_accepted": NOT_ACCEPTED,
}
