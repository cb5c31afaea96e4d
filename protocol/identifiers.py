"""Identity document numbers and phone numbers: format and check-digit rules. Pure functions.

Used by the wire schema of ``case.submit`` (protocol.messages) and by the staff API, which turns
:func:`check_id` into a field-level message for the clerk.

Two levels:

- :func:`id_fault` is strict and answers a stable fault code. It checks the number exactly as
  given, which is what the wire requires (upper-case letters, no spaces).
- :func:`check_id` first applies :func:`normalize_id` (what a clerk may type: spaces, a lower-case
  ``x``) and answers a Chinese message for people, or ``None`` when the number is fine.

Neither ever echoes the number back: messages never hold personal data.
"""

from __future__ import annotations

import re
from datetime import date

#: Identity document types of the wire (``applicant.id_type``) and their Chinese names.
ID_TYPES: dict[str, str] = {
    "resident_id": "居民身份证",
    "unified_social_credit_code": "统一社会信用代码",
    "passport": "护照",
    "hk_macao_permit": "港澳居民来往内地通行证",
    "taiwan_permit": "台湾居民来往大陆通行证",
    "foreign_permanent_residence": "外国人永久居留身份证",
}

#: Types a natural person may use (every type but the credit code of an organisation).
PERSON_ID_TYPES: frozenset[str] = frozenset(ID_TYPES) - {"unified_social_credit_code"}

# -- GB 11643-1999 citizen identity number ----------------------------------------------------

#: Weight of each of the first 17 digits: 2^(17 - i) mod 11.
RESIDENT_ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK = "10X98765432"
_RESIDENT_RE = re.compile(r"[0-9]{17}[0-9X]")
#: First two digits of a resident ID: provinces (GB/T 2260), plus 81/82/83 of the residence
#: permits of Hong Kong, Macao and Taiwan residents (港澳台居民居住证), which follow GB 11643.
RESIDENT_PROVINCES: frozenset[str] = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37"}
    | {"41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64"}
    | {"65", "71", "81", "82", "83"}
)


def resident_id_check_digit(first17: str) -> str:
    """The check character (``0``–``9`` or ``X``) of a GB 11643 number from its first 17 digits.

    ISO 7064 MOD 11-2: the sum of each digit times its weight, mod 11, indexes ``10X98765432``.
    """
    if not re.fullmatch(r"[0-9]{17}", first17):
        raise ValueError("first17 must be 17 ASCII digits")
    total = sum(int(d) * w for d, w in zip(first17, RESIDENT_ID_WEIGHTS, strict=True))
    return _RESIDENT_CHECK[total % 11]


def _birth_date_ok(digits: str) -> bool:
    """``YYYYMMDD`` is a calendar date from 1800 on (GB 11643's own example is of 1880)."""
    try:
        born = date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return born.year >= 1800


def resident_id_fault(value: str) -> str | None:
    """Why ``value`` is not an 18-character resident ID number, or ``None`` if it is one.

    Checks the form (17 digits and a digit or upper-case ``X``), the province code, the birth
    date (positions 7–14) and the check digit. Faults: ``format``, ``region``, ``birth_date``,
    ``check_digit``.
    """
    if not _RESIDENT_RE.fullmatch(value):
        return "format"
    if value[:2] not in RESIDENT_PROVINCES:
        return "region"
    if not _birth_date_ok(value[6:14]):
        return "birth_date"
    if resident_id_check_digit(value[:17]) != value[17]:
        return "check_digit"
    return None


def is_resident_id(value: str) -> bool:
    """``value`` is a well-formed resident ID number with the right check digit."""
    return resident_id_fault(value) is None


# -- GB 32100-2015 unified social credit code -------------------------------------------------

#: The 31 characters of the code, in value order: digits and upper-case letters but I O Z S V.
CREDIT_CODE_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: Weight of each of the first 17 characters: 3^i mod 31.
CREDIT_CODE_WEIGHTS: tuple[int, ...] = (
    1,
    3,
    9,
    27,
    19,
    26,
    16,
    17,
    20,
    29,
    25,
    13,
    8,
    24,
    10,
    30,
    28,
)
_CREDIT_RE = re.compile(r"[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}")


def credit_code_check_char(first17: str) -> str:
    """The check character of a unified social credit code from its first 17 characters.

    GB 32100-2015: each character's value (its index in :data:`CREDIT_CODE_CHARSET`) times its
    weight, summed; the check value is ``31 - sum mod 31`` (31 becomes 0).
    """
    if len(first17) != 17 or any(ch not in CREDIT_CODE_CHARSET for ch in first17):
        raise ValueError("first17 must be 17 characters of the credit code charset")
    values = [CREDIT_CODE_CHARSET.index(ch) for ch in first17]
    total = sum(v * w for v, w in zip(values, CREDIT_CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_CHARSET[(31 - total % 31) % 31]


def credit_code_fault(value: str) -> str | None:
    """Why ``value`` is not a unified social credit code, or ``None`` if it is one.

    Checks the form (18 characters of the charset, positions 3–8 an administrative division
    code of digits) and the check character. Faults: ``format``, ``check_digit``.
    """
    if not _CREDIT_RE.fullmatch(value):
        return "format"
    if credit_code_check_char(value[:17]) != value[17]:
        return "check_digit"
    return None


def is_credit_code(value: str) -> bool:
    """``value`` is a well-formed unified social credit code with the right check character."""
    return credit_code_fault(value) is None


# -- other documents: format only -------------------------------------------------------------

_LOOSE_FORMATS: dict[str, re.Pattern[str]] = {
    # Chinese passports are E/G + 8 characters; foreign ones vary: 5-17 letters and digits.
    "passport": re.compile(r"[A-Z0-9]{5,17}"),
    # 回乡证: H (Hong Kong) or M (Macao), 8 digits, optionally a 2-digit issue count.
    "hk_macao_permit": re.compile(r"[HM][0-9]{8}([0-9]{2})?"),
    # 台胞证: 8 digits since 2015; older cards 10 digits.
    "taiwan_permit": re.compile(r"[0-9]{8}([0-9]{2})?"),
}
#: 外国人永久居留身份证 of 2004/2017: 3-letter nationality and 12 digits.
_FOREIGN_OLD_RE = re.compile(r"[A-Z]{3}[0-9]{12}")
#: 外国人永久居留身份证 of 2023: 18 characters starting with 9, GB 11643 check digit.
_FOREIGN_NEW_RE = re.compile(r"9[0-9]{16}[0-9X]")


def foreign_permanent_residence_fault(value: str) -> str | None:
    """Why ``value`` is not a foreign permanent residence ID number, or ``None``.

    The 15-character form (3 letters, 12 digits) is checked for form only; the 18-character form
    of 2023 (``9``, 16 digits, a check character) also for its birth date and check digit.
    """
    if _FOREIGN_OLD_RE.fullmatch(value):
        return None
    if not _FOREIGN_NEW_RE.fullmatch(value):
        return "format"
    if not _birth_date_ok(value[6:14]):
        return "birth_date"
    if resident_id_check_digit(value[:17]) != value[17]:
        return "check_digit"
    return None


def id_fault(id_type: str, value: str) -> str | None:
    """Why ``value`` is not a valid number of document type ``id_type``, or ``None``.

    Strict: the number must already be normalized (see :func:`normalize_id`). Stable fault
    codes: ``unknown_type``, ``format``, ``region``, ``birth_date``, ``check_digit``.
    """
    if id_type == "resident_id":
        return resident_id_fault(value)
    if id_type == "unified_social_credit_code":
        return credit_code_fault(value)
    if id_type == "foreign_permanent_residence":
        return foreign_permanent_residence_fault(value)
    pattern = _LOOSE_FORMATS.get(id_type)
    if pattern is None:
        return "unknown_type"
    return None if pattern.fullmatch(value) else "format"


def is_valid_id(id_type: str, value: str) -> bool:
    """``value`` is a valid, normalized number of document type ``id_type``."""
    return id_fault(id_type, value) is None


def normalize_id(value: str) -> str:
    """What a clerk typed, as the wire carries it: no spaces, letters in upper case."""
    return "".join(value.split()).upper()


_FORMAT_MESSAGES: dict[str, str] = {
    "resident_id": "居民身份证号码应为18位：前17位为数字，最后一位为数字或X",
    "unified_social_credit_code": "统一社会信用代码应为18位数字或大写字母（不使用I、O、Z、S、V）",
    "passport": "护照号码应为5至17位字母或数字",
    "hk_macao_permit": "港澳居民来往内地通行证号码应为H或M开头，后接8位或10位数字",
    "taiwan_permit": "台湾居民来往大陆通行证号码应为8位或10位数字",
    "foreign_permanent_residence": (
        "外国人永久居留身份证号码应为15位（3位字母加12位数字）或9开头的18位"
    ),
}


def check_id(id_type: str, value: str) -> str | None:
    """A Chinese message telling a clerk what is wrong with the number, or ``None`` if valid.

    ``value`` is normalized first (:func:`normalize_id`), so ``11010519491231002x`` passes; send
    the normalized form on the wire.
    """
    fault = id_fault(id_type, normalize_id(value))
    if fault is None:
        return None
    name = ID_TYPES.get(id_type, "证件")
    if fault == "unknown_type":
        return "不支持的证件类型"
    if fault == "format":
        return _FORMAT_MESSAGES[id_type]
    if fault == "region":
        return f"{name}号码前两位不是有效的省级行政区划代码"
    if fault == "birth_date":
        return f"{name}号码中的出生日期无效"
    return f"{name}号码校验位不符，请核对是否录入有误"


#: English wording of each fault, for wire refusals (``schema_invalid`` details).
FAULT_TEXT: dict[str, str] = {
    "unknown_type": "unknown document type",
    "format": "has the wrong format",
    "region": "has an unknown province code",
    "birth_date": "has an invalid birth date",
    "check_digit": "has a wrong check digit",
}

# -- phone numbers ----------------------------------------------------------------------------

_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")
#: Area code (010, 02x, 0xxx), an optional hyphen, 7-8 digits, an optional extension.
_LANDLINE_RE = re.compile(r"0[1-9][0-9]{1,2}-?[2-9][0-9]{6,7}(-[0-9]{1,6})?")
#: E.164 outside the mainland (+852 Hong Kong, +853 Macao, +886 Taiwan, abroad); not +86.
_INTERNATIONAL_RE = re.compile(r"\+(?!86)[1-9][0-9]{6,14}")


def is_mobile(value: str) -> bool:
    """A mainland mobile number: 11 digits, ``1[3-9]`` then 9 digits."""
    return _MOBILE_RE.fullmatch(value) is not None


def is_landline(value: str) -> bool:
    """A mainland landline with its area code, e.g. ``0734-8888888`` or ``01088888888``."""
    return _LANDLINE_RE.fullmatch(value) is not None


def is_phone(value: str) -> bool:
    """A mainland mobile, a mainland landline, or an international ``+`` number (not +86)."""
    return is_mobile(value) or is_landline(value) or _INTERNATIONAL_RE.fullmatch(value) is not None
