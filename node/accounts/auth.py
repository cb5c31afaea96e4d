"""Who is calling: staff by Bearer JWT.

``authenticate(request)`` gives the ``Staff`` of the request's ``Authorization: Bearer <token>``
(a token this node issued: see node.accounts.service), or ApiError 401 ``unauthorized``;
``require_role(staff, *roles)`` refuses with ApiError 403 ``forbidden``. The signing secret
is read from the database once and cached per app (per Database handle).
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import service, sessions
from node.accounts.staff import ROLES, Staff
from node.appkeys import CONFIG
from node.http_errors import ApiError

__all__ = ["ROLES", "Staff", "authenticate", "bearer_token", "require_role"]


def _unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "请重新登录")


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def authenticate(request: web.Request) -> Staff:
    """The staff member of the request's Bearer token, or of the pages' session cookie (then a
    request that changes something must carry the session's CSRF token: ApiError 403
    ``csrf_failed`` otherwise); ApiError 401 (code ``unauthorized``) when there is neither."""
    token = bearer_token(request)
    if token is None:
        staff = await sessions.cookie_staff(request)
        if staff is None:
            raise _unauthorized()
        if request.method in sessions.UNSAFE and not await sessions.csrf_ok(
            request, sessions.cookie_token(request) or "", request.headers.get(sessions.CSRF_HEADER)
        ):
            raise ApiError(403, "csrf_failed", "页面已过期，请刷新后重试")
        return staff
    try:
        return await service.decode_token(
            sessions.database(request), token, request.app[CONFIG].region
        )
    except service.InvalidToken:
        raise _unauthorized() from None


def require_role(staff: Staff, *roles: str) -> None:
    """ApiError 403 (code ``forbidden``) unless ``staff.role`` is one of ``roles``."""
    if staff.role not in roles:
        raise ApiError(403, "forbidden", "无权执行此操作")
