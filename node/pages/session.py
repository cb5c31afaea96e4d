"""Staff sessions for the pages: setting and clearing the session cookie, the CSRF token a
page shows, the sliding refresh, and the page answers (login redirect, 403 and 404 pages).

The cookie and CSRF primitives (``cookie_name``, ``cookie_staff``, ``csrf_ok``, ...) live in
node.accounts.sessions, which the JSON API uses as well: the cookie ``tongban_session_<region>``
holds the same short-lived token that ``POST /api/v1/login`` gives (HttpOnly,
SameSite=Strict, Secure when the node's URL is https), and a request that changes something
must also carry ``X-CSRF-Token`` (or a ``csrf`` form field), which pages put in
``<meta name="csrf-token">``. A page load refreshes a token with less than half its life left
(the login itself still expires after ``MAX_SESSION``).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import unicodedata
from urllib.parse import quote, unquote, urlsplit

import jwt
from aiohttp import web

from node.accounts import service, sessions
from node.accounts.sessions import STAFF, TOKEN, cookie_name, cookie_staff, cookie_token, csrf_for
from node.accounts.staff import Staff
from node.appkeys import CONFIG

log = logging.getLogger(__name__)

#: Per-request state: the fresh token of a sliding refresh (for the response middleware) and
#: the CSRF token a page shows.
_FRESH: web.RequestKey[str] = web.RequestKey("tongban_fresh_token", str)
CSRF: web.RequestKey[str] = web.RequestKey("tongban_csrf", str)

__all__ = ["CSRF", "STAFF", "PageAnswer", "csrf_token", "fresh_token", "page_staff"]


class PageAnswer(Exception):
    """Stops a page handler and answers ``template`` with ``status`` instead (403, 404 pages)."""

    def __init__(self, template: str, status: int, **context: object) -> None:
        super().__init__(template)
        self.template = template
        self.status = status
        self.context = context


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this node, else ``default``: what may follow a login.

    Refused (not repaired): anything with a control character, any kind of whitespace or an
    invisible format character (browsers and aiohttp drop some of them, so ``/<TAB>/host``
    would become ``//host``), a backslash (browsers read it as ``/``), a scheme or host, a
    path not starting with exactly one ``/``, and ``.`` or ``..`` segments. The same checks
    run on the percent-decoded form too, so an encoded ``%09`` or ``%5C`` gets nowhere.
    """
    if not target:
        return default
    for form in (target, unquote(target)):
        if any(ch.isspace() or ch == "\\" or unicodedata.category(ch) in _INVISIBLE for ch in form):
            return default
        if not form.startswith("/") or form.startswith("//"):
            return default
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return default
        if any(segment in (".", "..") for segment in parts.path.split("/")):
            return default
    return target


#: Unicode categories never allowed in a redirect target: controls, format characters
#: (zero-width spaces, direction marks), separators, unassigned and private-use code points.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def login_redirect(request: web.Request) -> web.HTTPFound:
    return web.HTTPFound("/login?next=" + quote(request.path_qs, safe=""))


async def page_staff(request: web.Request, *roles: str) -> Staff:
    """The signed-in staff member for a page; redirects to the login form when there is none,
    answers the 403 page when the role is not one of ``roles`` (any role when empty)."""
    staff = await cookie_staff(request)
    if staff is None:
        raise login_redirect(request)
    if roles and staff.role not in roles:
        raise PageAnswer("forbidden.html", 403)
    await _maybe_refresh(request)
    return staff


async def _maybe_refresh(request: web.Request) -> None:
    token = request.get(TOKEN)
    if not token or request.method != "GET":
        return
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        left = float(claims["exp"]) - time.time()
        lifetime = float(claims["exp"]) - float(claims["iat"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return
    if left > lifetime / 2:
        return
    try:
        fresh = await service.refresh_token(
            sessions.database(request), token, request.app[CONFIG].region
        )
    except service.InvalidToken:
        return
    request[_FRESH] = fresh
    request[TOKEN] = fresh


async def csrf_token(request: web.Request) -> str:
    """The CSRF token for the request's session ('' without one)."""
    token = request.get(TOKEN) or cookie_token(request)
    if not token:
        return ""
    return csrf_for(await service.jwt_secret(sessions.database(request)), token)


def set_session(request: web.Request, response: web.StreamResponse, token: str) -> None:
    secure = _secure(request)
    response.set_cookie(
        cookie_name(request.app[CONFIG].region),
        token,
        httponly=True,
        samesite="Strict",
        secure=secure,
        path="/",
        max_age=int(service.MAX_SESSION),
    )


def login_cookie_name(request: web.Request) -> str:
    """The login form's CSRF cookie. Over https it is a ``__Host-`` cookie, which a sibling
    subdomain cannot set or overwrite (the weak spot of double-submit cookies)."""
    name = f"tongban_login_{request.app[CONFIG].region}"
    return f"__Host-{name}" if _secure(request) else name


def _secure(request: web.Request) -> bool:
    return request.app[CONFIG].url.startswith("https://")


def login_nonce(request: web.Request) -> str:
    """The random value of the login form's cookie: the browser's own if it sent a
    well-formed one, else a new one."""
    nonce = request.cookies.get(login_cookie_name(request), "")
    return nonce if _NONCE.fullmatch(nonce) else secrets.token_urlsafe(24)


_NONCE = re.compile(r"[A-Za-z0-9_-]{32}")


async def login_csrf(request: web.Request, nonce: str) -> str:
    """The login form's CSRF field for the cookie value ``nonce``."""
    return sessions.login_csrf_for(await service.jwt_secret(sessions.database(request)), nonce)


def set_login_cookie(request: web.Request, response: web.StreamResponse, nonce: str) -> None:
    response.set_cookie(
        login_cookie_name(request),
        nonce,
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        path="/",
        max_age=LOGIN_FORM_LIFETIME,
    )


async def login_form_ok(request: web.Request, offered: str | None) -> bool:
    """Whether a posted login form carries the CSRF field that goes with its cookie."""
    nonce = request.cookies.get(login_cookie_name(request), "")
    if not _NONCE.fullmatch(nonce):
        return False
    return await sessions.login_csrf_ok(request, nonce, offered)


#: How long a login form may stay open before it must be loaded again, seconds.
LOGIN_FORM_LIFETIME = 12 * 3600


def clear_session(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(cookie_name(request.app[CONFIG].region), path="/")


def fresh_token(request: web.Request) -> str | None:
    """The refreshed session token a page load made, for the response (node.pages.middleware)."""
    return request.get(_FRESH)
