"""A small strict schema language for message bodies.

Every object schema lists its fields; unknown fields, missing required fields and wrong types
are refused with ``schema_invalid`` and the JSON path of the fault (``body.applicant.phone``).
Booleans are never integers; integers are never floats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from protocol.errors import ErrorCode, ProtocolError


def fail(path: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.SCHEMA_INVALID, f"{path}: {message}", path=path)


class Schema:
    def check(self, value: Any, path: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Schema):
    max_len: int = 200
    min_len: int = 0
    pattern: str | None = None
    choices: frozenset[str] | None = None
    check_fn: Callable[[str], bool] | None = None
    check_message: str = "invalid value"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise fail(path, "must be a string")
        if not self.min_len <= len(value) <= self.max_len:
            raise fail(path, f"length must be {self.min_len}..{self.max_len}")
        if self.choices is not None and value not in self.choices:
            raise fail(path, "must be one of " + ", ".join(sorted(self.choices)))
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise fail(path, "has the wrong format")
        if self.check_fn is not None and not self.check_fn(value):
            raise fail(path, self.check_message)


def Enum(*values: str) -> Str:  # noqa: N802 - reads like a type in schemas
    return Str(choices=frozenset(values), max_len=max(len(v) for v in values))


@dataclass(frozen=True)
class Int(Schema):
    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(path, "must be an integer")
        if self.minimum is not None and value < self.minimum:
            raise fail(path, f"must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise fail(path, f"must be <= {self.maximum}")


@dataclass(frozen=True)
class Bool(Schema):
    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise fail(path, "must be true or false")


@dataclass(frozen=True)
class Date(Schema):
    """``YYYY-MM-DD``."""

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            raise fail(path, "must be a date YYYY-MM-DD")
        try:
            date.fromisoformat(value)
        except ValueError as exc:
            raise fail(path, "is not a calendar date") from exc


#: RFC 3339 profile of ISO 8601: date, ``T``, time to the second, optional fraction, offset.
_DATETIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)


@dataclass(frozen=True)
class DateTime(Schema):
    """ISO 8601 date-time with an offset, e.g. ``2026-11-22T09:30:00+08:00``.

    Only the RFC 3339 form: seconds present, at most 6 fraction digits, offset ``Z`` or
    ``+hh:mm`` (no basic format, week dates or offset-less times).
    """

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str) or not _DATETIME_RE.fullmatch(value):
            raise fail(path, "must be an ISO 8601 date-time with offset")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise fail(path, "must be an ISO 8601 date-time with offset") from exc
        if moment.tzinfo is None:
            raise fail(path, "needs a UTC offset")


@dataclass(frozen=True)
class Nullable(Schema):
    inner: Schema

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            self.inner.check(value, path)


@dataclass(frozen=True)
class List(Schema):
    item: Schema
    max_items: int = 100
    min_items: int = 0

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise fail(path, "must be a list")
        if not self.min_items <= len(value) <= self.max_items:
            raise fail(path, f"must have {self.min_items}..{self.max_items} items")
        for index, item in enumerate(value):
            self.item.check(item, f"{path}[{index}]")


@dataclass(frozen=True)
class Obj(Schema):
    """An object with ``required`` and ``optional`` fields and nothing else."""

    required: Mapping[str, Schema]
    optional: Mapping[str, Schema] = field(default_factory=dict)

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise fail(path, "must be an object")
        for name in value:
            if name not in self.required and name not in self.optional:
                raise fail(f"{path}.{name}", "unknown field")
        for name, schema in self.required.items():
            if name not in value:
                raise fail(f"{path}.{name}", "is required")
            schema.check(value[name], f"{path}.{name}")
        for name, schema in self.optional.items():
            if name in value:
                schema.check(value[name], f"{path}.{name}")


@dataclass(frozen=True)
class FreeObject(Schema):
    """An application form: any JSON object of bounded size (forms differ per item)."""

    max_keys: int = 200

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise fail(path, "must be an object")
        if len(value) > self.max_keys:
            raise fail(path, f"at most {self.max_keys} fields")


@dataclass(frozen=True)
class Checked(Schema):
    """``inner``, then a rule across its fields: ``rule(value, path)`` raises :func:`fail`.

    For constraints one field's schema cannot say alone, e.g. "``address`` is required when
    ``method`` is ``mail``". The rule runs only on a value ``inner`` accepted.
    """

    inner: Schema
    rule: Callable[[Any, str], None]

    def check(self, value: Any, path: str) -> None:
        self.inner.check(value, path)
        self.rule(value, path)
