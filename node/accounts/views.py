"""HTTP routes of this area (thin: parse, call a service function, answer).

- ``POST /api/v1/login`` ``{"username", "password"}`` → ``{"token", "expires_in", "user"}``
- ``POST /api/v1/token/refresh`` (Bearer) → a fresh token
- ``POST /api/v1/logout`` → revokes every token of the caller (and clears the page cookie)
- ``GET /api/v1/me`` → the caller
- ``GET|POST /api/v1/users`` (admin) → list / add
- ``GET /api/v1/users/{id}`` (admin or self)
- ``POST /api/v1/users/{id}/password`` (admin or self; self also sends ``current_password``)
- ``POST /api/v1/users/{id}/deactivate`` and ``.../activate`` (admin)

Passwords and tokens are never logged.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import web

from node.accounts import service, sessions
from node.accounts.auth import authenticate, bearer_token, require_role
from node.accounts.ratelimit import LoginThrottle
from node.accounts.staff import ROLE_LABELS, Staff
from node.appkeys import CONFIG, LOGIN_LIMITER
from node.http_errors import ApiError, field_error
from node.http_json import path_int, read_json

log = logging.getLogger(__name__)

#: Failed logins allowed per client address: a burst of 20, then 10 a minute, counted in the
#: database for all processes of the node. Only failures use it up, so a whole office behind
#: one address can log in at nine o'clock.
LOGIN_RATE_PER_MINUTE = 10
LOGIN_BURST = 20
#: Set this on the app before it starts to use other limits (tests, a tuned deployment).
_DEFAULT_THROTTLE = LoginThrottle(rate_per_minute=LOGIN_RATE_PER_MINUTE, burst=LOGIN_BURST)
#: Longest username or password accepted at the login form before any work is done.
_MAX_LOGIN_FIELD = 1024

_STATUS = {
    service.InvalidInput: 400,
    service.InvalidCredentials: 401,
    service.InvalidToken: 401,
    service.UserNotFound: 404,
    service.UserExists: 409,
    service.LastAdmin: 409,
    service.AccountLocked: 423,
    service.RateLimited: 429,
}


def login_limiter(app: web.Application) -> LoginThrottle:
    """The app's limits of failed logins per client address."""
    return app.get(LOGIN_LIMITER) or _DEFAULT_THROTTLE


async def checked_login(request: web.Request, username: str, password: str) -> Staff:
    """The staff member of ``username`` and ``password``, as ``service.verify_login`` gives
    it, after the client address paid one try of its failed-login budget (given back when the
    login succeeds). Raises service.RateLimited, InvalidCredentials or AccountLocked.

    The try is taken before the password is checked: requests sent in parallel are counted
    each, instead of all passing a check that none of them has counted yet.
    """
    db, region = sessions.database(request), request.app[CONFIG].region
    throttle = login_limiter(request.app)
    client = f"login-ip:{request.remote}"
    wait = await throttle.take(db, client)
    if wait:
        log.warning("login refused: too many failures from one client")
        raise service.RateLimited(wait)
    staff = await service.verify_login(db, username, password, region=region)
    await throttle.give_back(db, client)
    return staff


def api_error(exc: service.AccountError) -> ApiError:
    """The API form of a service refusal."""
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
    fields = []
    if isinstance(exc, service.InvalidInput):
        fields = [field_error(f, code, message) for f, code, message in exc.fields]
    return ApiError(status, exc.code, exc.message, fields)


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_input", "请求体应为 JSON 对象")
    return body


def _string_fields(body: dict[str, Any], *names: str) -> dict[str, str]:
    """The named fields as non-empty strings, or ApiError 400 naming each bad one."""
    errors = []
    values: dict[str, str] = {}
    for name in names:
        value = body.get(name)
        if value is None or value == "":
            errors.append(field_error(name, "required", "此项必填"))
        elif not isinstance(value, str):
            errors.append(field_error(name, "type", "应为字符串"))
        elif len(value) > _MAX_LOGIN_FIELD:
            errors.append(field_error(name, "too_long", "内容过长"))
        else:
            values[name] = value
    if errors:
        raise ApiError(400, "invalid_input", "输入有误", errors)
    return values


def _user_id(request: web.Request) -> int:
    user_id = path_int(request)
    if user_id is None:
        raise api_error(service.UserNotFound())
    return user_id


def _me(staff: Staff) -> dict[str, Any]:
    return {
        "id": staff.user_id,
        "username": staff.username,
        "display_name": staff.display_name,
        "role": staff.role,
        "role_label": ROLE_LABELS.get(staff.role, staff.role),
        "region": staff.region,
    }


def _token_answer(token: str, staff: Staff) -> dict[str, Any]:
    return {"token": token, "expires_in": int(service.TOKEN_LIFETIME), "user": _me(staff)}


def _rate_limited(exc: service.RateLimited) -> web.Response:
    response = api_error(exc).response()
    response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/login")
    async def login(request: web.Request) -> web.Response:
        fields = _string_fields(await _json_object(request), "username", "password")
        db, region = sessions.database(request), request.app[CONFIG].region
        try:
            staff = await checked_login(request, fields["username"], fields["password"])
        except service.RateLimited as exc:
            return _rate_limited(exc)
        except (service.InvalidCredentials, service.AccountLocked) as exc:
            raise api_error(exc) from None
        token = await service.issue_token(db, staff, region)
        return web.json_response(_token_answer(token, staff))

    @table.post("/api/v1/token/refresh")
    async def refresh(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        token = bearer_token(request) or ""
        db, region = sessions.database(request), request.app[CONFIG].region
        try:
            fresh = await service.refresh_token(db, token, region)
        except service.InvalidToken:
            raise ApiError(401, "unauthorized", "请重新登录") from None
        return web.json_response(_token_answer(fresh, staff))

    @table.post("/api/v1/logout")
    async def logout(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        await service.revoke_tokens(sessions.database(request), staff.user_id)
        log.info("logout: %s", staff.username)
        response = web.json_response({"logged_out": True})
        if sessions.cookie_token(request) is not None:
            response.del_cookie(sessions.cookie_name(request.app[CONFIG].region), path="/")
        return response

    @table.get("/api/v1/me")
    async def me(request: web.Request) -> web.Response:
        return web.json_response(_me(await authenticate(request)))

    @table.get("/api/v1/users")
    async def list_users(request: web.Request) -> web.Response:
        require_role(await authenticate(request), "admin")
        found = await service.list_users(sessions.database(request))
        return web.json_response({"users": [user.to_json() for user in found]})

    @table.post("/api/v1/users")
    async def add_user(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, "admin")
        body = await _json_object(request)
        try:
            user = await service.create_user(
                sessions.database(request),
                body.get("username"),  # the service checks every field
                body.get("password"),
                body.get("role"),
                body.get("display_name"),
            )
        except service.AccountError as exc:
            raise api_error(exc) from None
        log.info("user %s added by %s", user.username, staff.username)
        return web.json_response(user.to_json(), status=201)

    @table.get("/api/v1/users/{id}")
    async def get_user(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        user_id = _user_id(request)
        if user_id != staff.user_id:
            require_role(staff, "admin")
        try:
            user = await service.get_user(sessions.database(request), user_id)
        except service.AccountError as exc:
            raise api_error(exc) from None
        return web.json_response(user.to_json())

    @table.post("/api/v1/users/{id}/password")
    async def change_password(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        user_id = _user_id(request)
        own = user_id == staff.user_id
        if not own:
            require_role(staff, "admin")
        body = await _json_object(request)
        db, region = sessions.database(request), request.app[CONFIG].region
        if own:
            # A token alone must not be enough to take the account over for good.
            current = _string_fields(body, "current_password")["current_password"]
            try:
                await checked_login(request, staff.username, current)
            except service.RateLimited as exc:
                return _rate_limited(exc)
            except service.InvalidCredentials:
                raise ApiError(
                    400,
                    "invalid_input",
                    "当前密码不正确",
                    [field_error("current_password", "wrong", "当前密码不正确")],
                ) from None
            except service.AccountLocked as exc:
                raise api_error(exc) from None
        try:
            user = await service.set_password(db, user_id, body.get("password"))
        except service.AccountError as exc:
            raise api_error(exc) from None
        log.info("password of %s changed by %s", user.username, staff.username)
        answer: dict[str, Any] = {"user": user.to_json()}
        if own:  # the caller's old token died with the old password
            answer["token"] = await service.issue_token(db, user.staff(region), region)
        return web.json_response(answer)

    async def set_active(request: web.Request, active: bool) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, "admin")
        user_id = _user_id(request)
        if not active and user_id == staff.user_id:
            raise ApiError(409, "cannot_deactivate_self", "不能停用自己的账号")
        db = sessions.database(request)
        try:
            user = await (service.activate if active else service.deactivate)(db, user_id)
        except service.AccountError as exc:
            raise api_error(exc) from None
        log.info(
            "user %s %s by %s",
            user.username,
            "activated" if active else "deactivated",
            staff.username,
        )
        return web.json_response(user.to_json())

    @table.post("/api/v1/users/{id}/deactivate")
    async def deactivate(request: web.Request) -> web.Response:
        return await set_active(request, False)

    @table.post("/api/v1/users/{id}/activate")
    async def activate(request: web.Request) -> web.Response:
        return await set_active(request, True)

    return table
