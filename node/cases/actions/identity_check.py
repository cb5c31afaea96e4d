"""人证核验: an online application kept without a verified identity (docs/identity.md) is
accepted only after staff at the handling region's window have checked the applicant against
their identity document and recorded who checked, when and how. The event of the case's
hash-chained log is the record (who: its actor; when: its time; how: ``method``)."""

from __future__ import annotations

import json
from typing import Any

from node.cases import validation
from node.cases.actions import registry
from node.cases.actions.context import Step
from node.cases.errors import CaseError, CaseErrorCode

#: How the identity was checked.
METHODS = {
    "id_card_reader": "身份证读卡器核验（人证比对）",
    "document": "查验身份证件原件",
    "face": "人脸识别比对",
    "video": "视频核验",
}


@registry.staff("verify_identity")
async def verify_identity(step: Step, payload: dict[str, Any]) -> None:
    errors = validation.Errors()
    method = validation.choice(payload, "method", METHODS, errors, label="核验方式")
    note = validation.text(payload, "note", errors, label="核验说明", max_len=200, required=False)
    errors.raise_if_any()
    application = json.loads(step.row.application)
    if application.get("identity_verified") is not False:
        raise CaseError(CaseErrorCode.IDENTITY_ALREADY_VERIFIED, "申请人身份已核验，无需再次核验")
    check = {
        "method": "window",
        "check": method,
        "checked_by": step.actor.name,
        "checked_at": step.now_iso(),
    }
    if note:
        check["note"] = note
    application.update(identity_verified=True, identity=check)
    event: dict[str, Any] = {"method": method}
    if note:
        event["note"] = note
    await step.write(
        changes={"application": json.dumps(application, ensure_ascii=False)}, event=event
    )
