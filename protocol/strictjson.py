"""Strict JSON for everything that crosses the wire.

Refused: invalid UTF-8, a top level that is not an object, duplicate keys, NaN/Infinity, and
nesting deeper than ``MAX_DEPTH``. Encoding is canonical enough to be stable: UTF-8, no
whitespace, keys in insertion order.
"""

from __future__ import annotations

import json
from typing import Any

from protocol.errors import ErrorCode, ProtocolError

#: Deepest nesting a message may have. Real bodies are 4 levels deep; 32 leaves room and keeps
#: a hostile `[[[[...` from costing recursion.
MAX_DEPTH = 32


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ProtocolError(ErrorCode.INVALID_JSON, f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise ProtocolError(ErrorCode.INVALID_JSON, f"{name} is not JSON")


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def loads_object(data: bytes) -> dict[str, Any]:
    """Parse ``data`` as a strict JSON object or raise ProtocolError."""
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_ENCODING, "not valid UTF-8") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ProtocolError:
        raise
    except RecursionError as exc:
        raise ProtocolError(ErrorCode.JSON_TOO_DEEP, f"nesting deeper than {MAX_DEPTH}") from exc
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "top level is not a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise ProtocolError(ErrorCode.JSON_TOO_DEEP, f"nesting deeper than {MAX_DEPTH}")
    return value


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
