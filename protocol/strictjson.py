"""Strict JSON for everything that crosses the wire.

Refused: invalid UTF-8, a top level that is not an object, duplicate keys, NaN/Infinity (also
as a number too large for a double, such as ``1e400``), integers beyond +/-(2**53 - 1) (the
range every JSON implementation reads exactly), escapes of lone UTF-16 surrogates (strings
that are not Unicode text), and nesting deeper than ``MAX_DEPTH``. Encoding is canonical enough
to be stable: UTF-8, no whitespace, keys in insertion order.
"""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

from protocol.errors import ErrorCode, ProtocolError

#: Deepest nesting a message may have. Real bodies are 4 levels deep; 32 leaves room and keeps
#: a hostile `[[[[...` from costing recursion.
MAX_DEPTH = 32
#: Largest magnitude of an integer: 2**53 - 1.
MAX_INTEGER = 2**53 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A JSON escape that may spell half of a surrogate pair (\uD800..\uDFFF). Text read as
#: strict UTF-8 holds no surrogate, so only such an escape can make one: without any, the
#: walk that looks for lone surrogates in every string has nothing to find.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ProtocolError(ErrorCode.INVALID_JSON, f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise ProtocolError(ErrorCode.INVALID_JSON, f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(ErrorCode.INVALID_JSON, "number out of range")
    return value


def _exact_int(text: str) -> int:
    if len(text.lstrip("-")) > 16:  # cheap bound before conversion: 2**53 has 16 digits
        raise ProtocolError(ErrorCode.INVALID_JSON, "integer out of range")
    value = int(text)
    if abs(value) > MAX_INTEGER:
        raise ProtocolError(ErrorCode.INVALID_JSON, "integer out of range")
    return value


def _not_text(value: str) -> bool:
    return _SURROGATE.search(value) is not None


def _depth(value: Any) -> int:
    """Nesting depth (the top-level object is 1); refuses strings that are not Unicode text."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            for key, child in item.items():
                if _not_text(key):
                    raise ProtocolError(ErrorCode.INVALID_JSON, "lone surrogate in a key")
                stack.append((child, level + 1))
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
        elif isinstance(item, str) and _not_text(item):
            raise ProtocolError(ErrorCode.INVALID_JSON, "lone surrogate in a string")
    return deepest


#: A JSON string (as JSON spells it) and the brackets outside strings.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def scan_depth(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the nesting of ``text`` stays within ``limit``, judged from its brackets
    before any parsing (so a hostile ``[[[[...`` never reaches a recursive parser).

    Exact for valid JSON; for text that is not JSON it may over-count (the parser refuses that
    text anyway)."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


#: One strict decoder per thread (``json.loads`` with hooks builds a new one per call; the
#: C scanner keeps per-call state in the decoder, so threads do not share one).
_DECODERS = threading.local()


def _decoder() -> json.JSONDecoder:
    decoder: json.JSONDecoder | None = getattr(_DECODERS, "decoder", None)
    if decoder is None:
        decoder = json.JSONDecoder(
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_float=_finite,
            parse_int=_exact_int,
        )
        _DECODERS.decoder = decoder
    return decoder


def _check_walk(value: Any, text: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` and lone surrogates, walking ``value`` only
    when ``text`` could hold either: at most ``MAX_DEPTH`` brackets cannot nest deeper (those
    inside strings only make the count larger), and no surrogate escape makes no surrogate."""
    brackets = text.count("{") + text.count("[")
    if brackets <= MAX_DEPTH and _SURROGATE_ESCAPE.search(text) is None:
        return
    if _depth(value) > MAX_DEPTH:
        raise ProtocolError(ErrorCode.JSON_TOO_DEEP, f"nesting deeper than {MAX_DEPTH}")


def _parse(data: bytes) -> tuple[Any, str]:
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_ENCODING, "not valid UTF-8") from exc
    try:
        return _decoder().decode(text), text
    except ProtocolError:
        raise
    except RecursionError as exc:
        raise ProtocolError(ErrorCode.JSON_TOO_DEEP, f"nesting deeper than {MAX_DEPTH}") from exc
    except ValueError as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "bad value"
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not JSON: {message}") from exc


def loads_object(data: bytes) -> dict[str, Any]:
    """Parse ``data`` as a strict JSON object or raise ProtocolError."""
    value, text = _parse(data)
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "top level is not a JSON object")
    _check_walk(value, text)
    return value


def loads_value(data: bytes) -> Any:
    """Parse ``data`` as any strict JSON value (the rules of ``loads_object`` but for the top
    level), bounding the depth before parsing; raise ProtocolError. For request bodies of the
    staff and citizen API."""
    if not scan_depth(data.decode("utf-8", errors="replace")):
        raise ProtocolError(ErrorCode.JSON_TOO_DEEP, f"nesting deeper than {MAX_DEPTH}")
    value, text = _parse(data)
    _check_walk(value, text)
    return value


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
