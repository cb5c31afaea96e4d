"""Reading what a client sends: request bodies and numbers in the query, refused with a 400
and a stable code instead of failing deeper down with a 500.

- ``await read_json(request)``: the body as strict JSON (protocol/strictjson.py rules: UTF-8,
  no duplicate names, no NaN, integers within ±(2^53 − 1), nesting at most 32, checked before
  parsing), or ``ApiError(400, "invalid_json")``; over the app's ``client_max_size`` it is 413
  ``too_large``.
- ``query_int(request, name, default, minimum, maximum)``: an integer query parameter within
  its bounds, or ``ApiError(400, "invalid_input")`` naming the field.
- ``path_int(request, name)``: an integer path parameter that fits a database id, or ``None``
  (the caller answers its own 404).
- ``await read_body(request, limit)``: the raw body, all of it however the network cut it, or
  ``None`` when it is longer than ``limit`` (never reads more than ``limit + 1`` bytes).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from node.http_errors import ApiError, field_error
from protocol.errors import ErrorCode, ProtocolError
from protocol.strictjson import MAX_DEPTH, loads_value

#: Largest id a database column holds (BIGINT); larger ids name nothing.
MAX_ID = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]{1,19}")

_REASONS = {
    ErrorCode.INVALID_ENCODING: "不是 UTF-8 编码 (not UTF-8)",
    ErrorCode.JSON_TOO_DEEP: f"嵌套超过 {MAX_DEPTH} 层 (nesting deeper than {MAX_DEPTH})",
}


async def read_body(request: web.BaseRequest, limit: int) -> bytes | None:
    """All of the body, or ``None`` if it is longer than ``limit`` bytes.

    ``StreamReader.read(n)`` returns what is buffered, which is less than the body whenever it
    arrives in more than one piece (a large body, a slow sender); this reads on until the end.
    """
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return None


async def read_json(request: web.BaseRequest) -> Any:
    """The request body as strict JSON, any top-level value; ``ApiError(400, "invalid_json")``
    for anything else (the detail says why)."""
    raw = await request.read()  # bounded by client_max_size: 413 too_large above it
    try:
        return loads_value(raw)
    except ProtocolError as exc:
        reason = _REASONS.get(exc.code, exc.detail)
        raise ApiError(400, "invalid_json", f"请求体不是有效的 JSON：{reason}") from None


def query_int(
    request: web.BaseRequest,
    name: str,
    default: int | None,
    minimum: int,
    maximum: int,
) -> int:
    """The integer query parameter ``name``, ``minimum`` ≤ value ≤ ``maximum``.

    Missing or empty gives ``default`` (``None``: the parameter is required). Anything that is
    not a decimal integer within the bounds is ``ApiError(400, "invalid_input")`` with a field
    error for ``name``: never clamped, never passed on to the database.
    """
    raw = request.query.get(name, "")
    if raw == "":
        if default is None:
            raise _invalid(name, "required", "此项必填")
        return default
    value = int(raw) if _INTEGER.fullmatch(raw) else None
    if value is None or not minimum <= value <= maximum:
        raise _invalid(name, "invalid", f"应为 {minimum}–{maximum} 之间的整数")
    return value


def path_int(request: web.Request, name: str = "id") -> int | None:
    """The integer path parameter ``name`` if it can name a row (1 ≤ id ≤ 2^63 − 1), else
    ``None``: the caller answers its not-found."""
    raw = request.match_info.get(name, "")
    if not _INTEGER.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def _invalid(name: str, code: str, message: str) -> ApiError:
    return ApiError(400, "invalid_input", "查询参数有误", [field_error(name, code, message)])
