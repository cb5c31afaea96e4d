"""``case.withdraw_requested`` and ``case.withdrawn``: the applicant withdraws (撤回) the
application; the handling region confirms.
"""

from __future__ import annotations

from protocol.messages.fields import FILE_REF, NOTE, line, text
from protocol.schema import DateTime, Enum, Obj, Schema

WITHDRAW_REQUESTED = Obj(
    required={"reason": text(500), "requested_at": DateTime()},
    optional={"signed_request": FILE_REF, "note": NOTE},
)

#: Who asked for a withdrawal the handling region confirms: the window (its
#: ``case.withdraw_requested``), or the applicant in person at the handling region, by phone or
#: by letter (recorded by its staff).
WITHDRAWAL_REQUESTER = Obj(
    required={"kind": Enum("window", "applicant"), "requested_at": DateTime()},
    optional={"name": line(100), "channel": Enum("window", "hall", "phone", "mail")},
)

WITHDRAWN = Obj(
    required={"withdrawn_at": DateTime()},
    optional={"reason": text(500), "requested_by": WITHDRAWAL_REQUESTER, "note": NOTE},
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.withdraw_requested": WITHDRAW_REQUESTED,
    "case.withdrawn": WITHDRAWN,
}
