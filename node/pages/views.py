"""Sign-in, sign-out, the home redirect and static files of the pages."""

from __future__ import annotations

import logging

from aiohttp import web

from node.accounts import service, sessions
from node.accounts.views import checked_login
from node.appkeys import CONFIG
from node.pages import session
from node.pages.rendering import STATIC, render

log = logging.getLogger(__name__)

#: Where each role starts.
HOME = {
    "clerk": "/window",
    "approver": "/office",
    "inspector": "/office",
    "supervisor": "/supervision",
    "admin": "/supervision",
    "helper": "/video/desk",
}


async def _login_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str = "",
    code: str = "",
    username: str = "",
    next: str = "",
) -> web.Response:
    """The login form, with its CSRF field and the cookie that goes with it."""
    nonce = session.login_nonce(request)
    response = render(
        request,
        "login.html",
        status=status,
        error=error,
        error_code=code,
        username=username,
        next=next,
        login_csrf=await session.login_csrf(request, nonce),
    )
    session.set_login_cookie(request, response, nonce)
    return response


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/")
    async def home(request: web.Request) -> web.Response:
        staff = await sessions.cookie_staff(request)
        if staff is None:
            raise web.HTTPFound("/login")
        raise web.HTTPFound(HOME.get(staff.role, "/office"))

    @table.get("/login")
    async def login_form(request: web.Request) -> web.Response:
        return await _login_page(request, next=session.safe_next(request.query.get("next"), ""))

    @table.post("/login")
    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        username = str(form.get("username", ""))[:200]
        password = str(form.get("password", ""))[:1024]
        target = session.safe_next(str(form.get("next", "")), "")
        db, region = sessions.database(request), request.app[CONFIG].region

        async def again(message: str, status: int, code: str) -> web.Response:
            return await _login_page(
                request, status=status, error=message, code=code, username=username, next=target
            )

        # Before anything else: a form another site made must not even count as an attempt.
        if not await session.login_form_ok(request, str(form.get(sessions.CSRF_FIELD, ""))):
            log.info("login form refused: csrf_failed")
            return await again("登录页面已过期或来源不明，请重新登录", 403, "csrf_failed")
        try:
            staff = await checked_login(request, username, password)
        except service.RateLimited:
            return await again("登录失败次数过多，请稍后再试", 429, "rate_limited")
        except service.AccountLocked:
            return await again("账号已临时锁定，请稍后再试或联系管理员", 423, "account_locked")
        except (service.InvalidCredentials, service.InvalidInput):
            return await again("用户名或密码不正确", 401, "invalid_credentials")
        token = await service.issue_token(db, staff, region)
        response = web.HTTPFound(target or HOME.get(staff.role, "/office"))
        session.set_session(request, response, token)
        raise response

    @table.post("/logout")
    async def logout(request: web.Request) -> web.Response:
        form = await request.post()
        token = sessions.cookie_token(request)
        if token and await sessions.csrf_ok(request, token, str(form.get(sessions.CSRF_FIELD, ""))):
            staff = await sessions.cookie_staff(request)
            if staff is not None:  # revoke the token itself, not only the browser's copy
                await service.revoke_tokens(sessions.database(request), staff.user_id)
                log.info("logout: %s", staff.username)
            response = web.HTTPFound("/login")
            session.clear_session(request, response)
            raise response
        raise web.HTTPFound("/")

    table.static("/static", STATIC, append_version=False)
    return table
