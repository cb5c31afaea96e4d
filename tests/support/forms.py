"""A filled-in application form that satisfies an item's ``form_fields`` (一表申请)."""

from __future__ import annotations

from typing import Any

#: Values by field type; select fields take their first option.
SAMPLE = {"text": "测试填写内容", "number": 120, "date": "2026-12-01"}


def form_for(item: dict[str, Any], **given: Any) -> dict[str, Any]:
    """Every field of ``item`` (its 一次告知 view) filled in, ``given`` values winning."""
    form: dict[str, Any] = {}
    for field in item["form_fields"]:
        if field["type"] == "select":
            form[field["name"]] = field["options"][0]
        else:
            form[field["name"]] = SAMPLE[field["type"]]
    form.update(given)
    return form
