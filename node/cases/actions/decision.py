"""办结决定: the handling region decides (准予 with the result documents, or 不予 with reasons)."""

from __future__ import annotations

import json
from typing import Any

from node.cases import records, validation
from node.cases.actions import registry
from node.cases.actions.context import Step, clean
from node.cases.lifecycle import Status
from node.storage import filetypes
from protocol.envelope import Envelope


@registry.staff("decide")
async def decide(step: Step, payload: dict[str, Any]) -> None:
    errors = validation.Errors()
    outcome = validation.choice(
        payload, "outcome", {"approved": "准予", "denied": "不予"}, errors, label="办理结果"
    )
    reason = validation.text(
        payload, "reason", errors, label="决定理由", max_len=1000, required=outcome == "denied"
    )
    certificate = validation.text(
        payload, "certificate_no", errors, label="证照编号", max_len=100, required=False
    )
    if certificate and outcome == "denied":
        errors.add("certificate_no", "not_applicable", "不予办理的决定没有证照编号")
    documents: list[dict[str, Any]] = []
    given = payload.get("documents") or []
    if not isinstance(given, list):
        errors.add("documents", "invalid_type", "结果文书应为列表")
        given = []
    for index, doc in enumerate(given[:20]):
        doc = doc if isinstance(doc, dict) else {}
        blob = doc.get("blob")
        if await step.upload(blob) is None:
            errors.add(f"documents[{index}].blob", "file_missing", "请上传结果文书")
            continue
        name = validation.text(
            doc, "name", errors, label="文书名称", path=f"documents[{index}].name"
        )
        documents.append({"blob": blob, "name": name})
    if outcome == "approved" and not documents:
        errors.add("documents", "required", "准予决定须上传结果文书（如许可证 PDF）")
    errors.raise_if_any()
    assert outcome is not None
    decision = clean(
        {
            "outcome": outcome,
            "reason": reason,
            "certificate_no": certificate,
            "documents": documents,
            "decided_at": step.now_iso(),
            "approver": step.actor.name,
        }
    )
    details = step.details
    details["decision"] = decision
    changes = {"details": json.dumps(details, ensure_ascii=False), **step.close_pause()}
    await step.write(
        to_status=Status(outcome),
        changes=changes,
        event={"outcome": outcome, "documents": len(documents)},
        envelope=records.Envelope(
            "case.decided", decision, await step.blob_refs([d["blob"] for d in documents])
        ),
        files=[d["blob"] for d in documents],
    )


@registry.partner("decide")
async def decided(step: Step, env: Envelope) -> None:
    details = step.details
    details["decision"] = env.body
    await step.remember_partner_files(filetypes.DOCUMENTS)
    await step.write(
        to_status=Status(env.body["outcome"]),
        changes={"details": json.dumps(details, ensure_ascii=False), **step.close_pause()},
        event={"outcome": env.body["outcome"]},
    )
