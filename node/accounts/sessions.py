"""Staff sessions carried by a cookie, and their CSRF tokens (no pages here).

The cookie ``tongban_session_<region>`` holds the same short-lived staff token that
``POST /api/v1/login`` gives. ``node.accounts.auth.authenticate`` accepts it in place of a
Bearer header, but then a request that changes something must also carry ``X-CSRF-Token`` (or
a ``csrf`` form field): an HMAC of the session token under the node's staff secret. The pages
(node.pages.session) set and clear the cookie and put the CSRF token into every page; they
import from here, never the other way round.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from node.accounts import service
from node.accounts.staff import Staff
from node.appkeys import CONFIG, DATABASE
from node.storage.database import Database

COOKIE = "tongban_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
#: Methods that change something: with a cookie they need the CSRF token.
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Per-request state: the staff member and the token of the session cookie once read (the
#: pages replace TOKEN with a refreshed one).
STAFF: web.RequestKey[Staff | None] = web.RequestKey("tongban_staff", object)  # type: ignore[arg-type]
TOKEN: web.RequestKey[str | None] = web.RequestKey("tongban_token", object)  # type: ignore[arg-type]


def database(request: web.Request) -> Database:
    """The node's database, with this area told where the node directory (and so the token
    secret) is: every accounts call from HTTP code takes the database from here."""
    db = request.app[DATABASE]
    service.use_node_dir(db, request.app[CONFIG].dir)
    return db


def cookie_name(region: str) -> str:
    """The session cookie of ``region``'s node. Cookies do not keep ports apart, so nodes on one
    host (the demo, a test) would overwrite each other's sessions under one name."""
    return f"{COOKIE}_{region}"


def csrf_for(secret: bytes, token: str) -> str:
    """The CSRF token that goes with a session token."""
    return hmac.new(secret, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()[:40]


async def csrf_ok(request: web.Request, token: str, offered: str | None) -> bool:
    """Whether ``offered`` is the CSRF token of the session token ``token``."""
    if not offered or not token:
        return False
    expected = csrf_for(await service.jwt_secret(database(request)), token)
    return hmac.compare_digest(expected, offered)


def login_csrf_for(secret: bytes, nonce: str) -> str:
    """The login form's CSRF token for the random ``nonce`` of its own cookie (there is no
    session yet to tie it to): a double-submit cookie whose field is an HMAC under the staff
    secret, so a token cannot be made up for a cookie someone else planted."""
    return hmac.new(secret, b"login-csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


async def login_csrf_ok(request: web.Request, nonce: str | None, offered: str | None) -> bool:
    """Whether ``offered`` is the login form's CSRF token for the cookie's ``nonce``."""
    if not nonce or not offered:
        return False
    expected = login_csrf_for(await service.jwt_secret(database(request)), nonce)
    return hmac.compare_digest(expected, offered)


def cookie_token(request: web.Request) -> str | None:
    """The token in the request's session cookie, or None."""
    token = request.cookies.get(cookie_name(request.app[CONFIG].region), "").strip()
    return token or None


async def cookie_staff(request: web.Request) -> Staff | None:
    """The staff member of the request's session cookie (cached on the request), or None."""
    if STAFF in request:
        return request[STAFF]
    staff: Staff | None = None
    token = cookie_token(request)
    if token is not None:
        try:
            staff = await service.decode_token(database(request), token, request.app[CONFIG].region)
        except service.InvalidToken:
            staff = None
    request[STAFF] = staff
    request[TOKEN] = token if staff is not None else None
    return staff
