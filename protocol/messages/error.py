"""``case.error``: either side refuses a message it received (``ref`` is that message's
``jti``).
"""

from __future__ import annotations

from protocol.messages.fields import UUID, is_text
from protocol.schema import Obj, Schema, Str

ERROR = Obj(
    required={
        "code": Str(min_len=2, max_len=64, pattern=r"[a-z][a-z0-9_]*"),
        "detail": Str(
            max_len=1000,
            check_fn=lambda s: s == "" or is_text(s),
            check_message="must have no control characters",
        ),
        "ref": UUID,
    },
)

#: Body schema of each message type of this family.
SCHEMAS: dict[str, Schema] = {
    "case.error": ERROR,
}
