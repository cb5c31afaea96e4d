"""Field-level checks of staff and public API input: a stable code for programs and a Chinese
message for people, per field, all at once (一次告知 applies to our own forms too)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from node.cases.errors import CaseError, CaseErrorCode, field_error
from protocol import identifiers

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ID_TYPES = {
    "resident_id": "居民身份证",
    "unified_social_credit_code": "统一社会信用代码",
    "passport": "护照",
    "hk_macao_permit": "港澳居民来往内地通行证",
    "taiwan_permit": "台湾居民来往大陆通行证",
    "foreign_permanent_residence": "外国人永久居留身份证",
}


class Errors:
    """Collects field errors; ``raise_if_any`` answers 400 with all of them."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append(field_error(field, code, message))

    def raise_if_any(self, message: str = "提交的信息有误，请按提示修改") -> None:
        if self.items:
            raise CaseError(CaseErrorCode.INVALID_INPUT, message, fields=self.items)


def text(
    data: dict[str, Any],
    key: str,
    errors: Errors,
    *,
    label: str,
    max_len: int = 200,
    required: bool = True,
    path: str | None = None,
) -> str | None:
    field = path or key
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.add(field, "required", f"请填写{label}")
        return None
    if not isinstance(value, str):
        errors.add(field, "invalid_type", f"{label}应为文字")
        return None
    value = value.strip()
    if len(value) > max_len:
        errors.add(field, "too_long", f"{label}不能超过{max_len}个字")
        return None
    return value


def choice(
    data: dict[str, Any],
    key: str,
    options: dict[str, str] | set[str],
    errors: Errors,
    *,
    label: str,
    path: str | None = None,
    required: bool = True,
) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if value not in options:
        errors.add(path or key, "invalid_choice", f"请选择有效的{label}")
        return None
    return str(value)


def integer(
    data: dict[str, Any],
    key: str,
    errors: Errors,
    *,
    label: str,
    minimum: int,
    maximum: int,
    path: str | None = None,
) -> int | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        errors.add(path or key, "invalid_number", f"{label}应为{minimum}到{maximum}之间的整数")
        return None
    return value


def iso_date(
    data: dict[str, Any], key: str, errors: Errors, *, label: str, required: bool = False
) -> date | None:
    value = data.get(key)
    if value is None and not required:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        errors.add(key, "invalid_date", f"{label}应为日期（YYYY-MM-DD）")
        return None


def iso_datetime(data: dict[str, Any], key: str, errors: Errors, *, label: str) -> datetime | None:
    value = data.get(key)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        errors.add(key, "invalid_datetime", f"{label}应为带时区的时间（ISO 8601）")
        return None
    if moment.tzinfo is None:
        errors.add(key, "invalid_datetime", f"{label}应带时区")
        return None
    return moment


def applicant(data: Any, errors: Errors) -> dict[str, str] | None:
    if not isinstance(data, dict):
        errors.add("applicant", "required", "请填写申请人信息")
        return None
    kind = choice(
        data,
        "kind",
        {"person": "个人", "org": "法人或其他组织"},
        errors,
        label="申请人类型",
        path="applicant.kind",
    )
    name = text(data, "name", errors, label="申请人名称", max_len=100, path="applicant.name")
    id_type = choice(data, "id_type", ID_TYPES, errors, label="证件类型", path="applicant.id_type")
    id_number = text(
        data, "id_number", errors, label="证件号码", max_len=40, path="applicant.id_number"
    )
    phone = text(data, "phone", errors, label="联系电话", max_len=20, path="applicant.phone")
    if id_type and id_number:
        problem = identifiers.check_id(id_type, id_number)
        if problem:
            errors.add("applicant.id_number", "invalid_id_number", problem)
    if kind == "org" and id_type and id_type != "unified_social_credit_code":
        errors.add("applicant.id_type", "invalid_choice", "法人或其他组织请使用统一社会信用代码")
    if phone and not identifiers.is_phone(phone):
        errors.add(
            "applicant.phone", "invalid_phone", "请填写有效的手机号码或固定电话（如 0734-8888888）"
        )
    if None in (kind, name, id_type, id_number, phone):
        return None
    return {
        "kind": str(kind),
        "name": str(name),
        "id_type": str(id_type),
        "id_number": str(id_number).upper(),
        "phone": str(phone),
    }


def delivery(data: Any, errors: Errors) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        errors.add("delivery", "required", "请选择结果领取方式")
        return None
    method = choice(
        data,
        "method",
        {"window": "窗口领取", "mail": "邮寄"},
        errors,
        label="领取方式",
        path="delivery.method",
    )
    address = data.get("address")
    if method == "mail":
        address = text(
            data, "address", errors, label="邮寄地址", max_len=300, path="delivery.address"
        )
    elif address is not None:
        address = text(
            data,
            "address",
            errors,
            label="邮寄地址",
            max_len=300,
            required=False,
            path="delivery.address",
        )
    if method is None:
        return None
    return {"method": method, "address": address if method == "mail" else None}


#: Longest value of a text field of an application form.
FORM_TEXT_MAX = 500
_NUMBER_RE = re.compile(r"^-?[0-9]{1,15}(\.[0-9]{1,6})?$")


def form(fields: Any, data: Any, errors: Errors, *, prefix: str = "") -> dict[str, Any]:
    """Check an application form against the item's ``form_fields`` (一表申请): required
    fields present, values of the field's type (text, number, date, select option), no
    fields the item does not have. Returns the form with values normalised (text stripped,
    numbers as JSON numbers); every fault is added to ``errors`` at ``{prefix}form.{name}``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.add(f"{prefix}form", "invalid_type", "申请表应为对象")
        return {}
    out: dict[str, Any] = {}
    known = set()
    for spec in fields:
        known.add(spec.name)
        path = f"{prefix}form.{spec.name}"
        value = data.get(spec.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.required:
                errors.add(path, "required", f"请填写「{spec.label}」")
            continue
        if spec.type == "number":
            number = _form_number(value)
            if number is None:
                errors.add(path, "invalid_number", f"「{spec.label}」应为数字")
            else:
                out[spec.name] = number
            continue
        if not isinstance(value, str):
            errors.add(path, "invalid_type", f"「{spec.label}」应为文字")
            continue
        value = value.strip()
        if spec.type == "date":
            try:
                day = date.fromisoformat(value)
            except ValueError:
                day = None
            if day is None or len(value) != 10:
                errors.add(path, "invalid_date", f"「{spec.label}」应为日期（YYYY-MM-DD）")
                continue
        elif spec.type == "select":
            if value not in spec.options:
                errors.add(
                    path,
                    "invalid_choice",
                    f"「{spec.label}」应为以下之一：{'、'.join(spec.options)}",
                )
                continue
        elif len(value) > FORM_TEXT_MAX or any(ord(c) < 32 and c not in "\n\t" for c in value):
            errors.add(
                path,
                "invalid_text",
                f"「{spec.label}」不能超过{FORM_TEXT_MAX}个字，且不能含控制字符",
            )
            continue
        out[spec.name] = value
    for key in data:
        if key not in known:
            errors.add(f"{prefix}form.{key}", "unknown_field", "该事项的申请表没有此栏目")
    return out


def _form_number(value: Any) -> int | float | None:
    """A JSON number, or a decimal number written as text ("1200", "86.5"); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < 10**15 else None
    if isinstance(value, float):
        return value if value == value and abs(value) < 1e15 else None
    if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        text_ = value.strip()
        return float(text_) if "." in text_ else int(text_)
    return None
