"""The made-up people and companies of the demo: well-formed ID numbers and credit codes, the
applicants of the cases, and whom the demo's identity provider offers on its login page."""

from __future__ import annotations

from typing import Any

from node.identity.devprovider import Person
from protocol.identifiers import credit_code_check_char, resident_id_check_digit


def resident_id(area: str, born: str, serial: str) -> str:
    """A well-formed 居民身份证号码 (GB 11643 check digit) for a made-up person."""
    first = area + born + serial
    return first + resident_id_check_digit(first)


def credit_code(area: str, body: str) -> str:
    """A well-formed 统一社会信用代码 (GB 32100 check character) for a made-up company."""
    first = "91" + area + body
    return first + credit_code_check_char(first)


#: Whom the demo's identity provider offers on its login page: the applicants of the demo's
#: 全程网办 stories first (their cases are theirs), then anyone for a new application.
DEMO_PEOPLE_SOURCE = (
    ("邱孝芳", "430405", "19860317", "042"),
    ("孙晓雯", "370502", "19990612", "026"),
    ("曾国华", "430523", "19780912", "035"),
    ("刘洋", "430405", "19920214", "017"),
)


def demo_people() -> tuple[Person, ...]:
    return tuple(Person(name, resident_id(*rest)) for name, *rest in DEMO_PEOPLE_SOURCE)


def person(name: str, area: str, born: str, serial: str, phone: str) -> dict[str, Any]:
    return {
        "kind": "person",
        "name": name,
        "id_type": "resident_id",
        "id_number": resident_id(area, born, serial),
        "phone": phone,
    }


def company(name: str, area: str, body: str, phone: str) -> dict[str, Any]:
    return {
        "kind": "org",
        "name": name,
        "id_type": "unified_social_credit_code",
        "id_number": credit_code(area, body),
        "phone": phone,
    }
