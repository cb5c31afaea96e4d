"""Reading request bodies and query numbers (provisional; replaced by the robustness branch)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from node.http_errors import ApiError


async def read_json(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", "请求体不是有效的 JSON") from exc


def query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_input", f"{name} 应为整数") from exc
    if not minimum <= value <= maximum:
        raise ApiError(400, "invalid_input", f"{name} 应在 {minimum} 到 {maximum} 之间")
    return value
