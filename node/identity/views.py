"""The citizen's login for the pages (authorization code flow with state, nonce and PKCE S256)
and the identity of an API caller (``Authorization: Bearer <id_token>``), docs/identity.md.

- ``GET /citizen/login?next=/apply/…``: a fresh state, nonce and PKCE verifier go into the
  sealed login cookie; the browser is sent to the provider's authorization endpoint.
- ``GET /citizen/callback?code&state``: the state must be the cookie's; the code is exchanged
  (with the verifier) at the token endpoint; the ID token is verified with the cookie's nonce;
  the citizen gets a sealed session cookie and goes on to ``next`` (a path on this node only).
- ``POST /citizen/logout``: ends the session (its CSRF token required).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from urllib.parse import quote

from aiohttp import web

from node.appkeys import CASES, CONFIG, DATABASE, IDENTITY
from node.identity import session
from node.identity.caller import citizen_session
from node.identity.errors import IdentityError
from node.identity.session import CALLBACK_PATH
from node.identity.session_ends import end_session
from node.pages.rendering import render
from node.pages.session import safe_next

__all__ = ["CALLBACK_PATH", "login_url", "routes"]

log = logging.getLogger(__name__)

UNAVAILABLE = "本地区尚未开通统一身份认证登录，暂不能网上申请。"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def challenge_of(verifier: str) -> str:
    """PKCE S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect(location: str) -> web.Response:
    """A 302 that may carry cookies (returned, not raised)."""
    return web.Response(status=302, headers={"Location": location, **NO_STORE})


def login_url(next_path: str) -> str:
    return "/citizen/login?next=" + quote(next_path, safe="")


def _secure(request: web.Request) -> bool:
    return request.app[CONFIG].url.startswith("https://")


def _message(
    request: web.Request, message: str, *, status: int, retry: str | None = None
) -> web.Response:
    response = render(
        request,
        "citizen/identity.html",
        status=status,
        heading="统一身份认证",
        message=message,
        unavailable=status in (200, 503),
        retry=retry,
    )
    response.headers.update(NO_STORE)
    return response


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/citizen/login")
    async def login(request: web.Request) -> web.StreamResponse:
        rp = request.app[IDENTITY]
        next_path = safe_next(request.query.get("next"), "/query")
        if not rp.configured:
            return _message(request, UNAVAILABLE, status=200)
        login = session.new_login(next_path, rp.clock())
        try:
            target = await rp.authorization_url(
                state=login.state, nonce=login.nonce, challenge=challenge_of(login.verifier)
            )
        except IdentityError as exc:
            return _message(request, exc.message, status=503)
        response = redirect(target)
        config = request.app[CONFIG]
        session.set_login(
            response, request.app[CASES].sealer, config.region, login, secure=_secure(request)
        )
        return response

    @table.get(CALLBACK_PATH)
    async def callback(request: web.Request) -> web.StreamResponse:
        rp = request.app[IDENTITY]
        config = request.app[CONFIG]
        sealer = request.app[CASES].sealer
        login = session.read_login(request, sealer, config.region, rp.clock())
        state = request.query.get("state", "")
        retry = login_url(login.next if login else "/query")
        if login is None or not hmac.compare_digest(state.encode(), login.state.encode()):
            response = _message(request, "登录已失效，请重新登录。", status=400, retry=retry)
            session.clear_login(response, config.region)
            return response
        code = request.query.get("code", "")
        if "error" in request.query or not code or len(code) > 2048:
            response = _message(request, "登录未完成，请重新登录。", status=400, retry=retry)
            session.clear_login(response, config.region)
            return response
        try:
            token = await rp.exchange(code, login.verifier)
            identity = await rp.verify(token, nonce=login.nonce)
        except IdentityError as exc:
            log.info("citizen login refused (%s)", exc.code)
            response = _message(request, exc.message, status=exc.status, retry=retry)
            session.clear_login(response, config.region)
            return response
        minutes = rp.settings.session_minutes
        citizen = session.new_session(
            name=identity.name,
            id_number=identity.id_number,
            issuer=identity.issuer,
            subject=identity.subject,
            expires=rp.clock() + minutes * 60,
        )
        response = redirect(login.next)
        session.clear_login(response, config.region)
        session.set_session(
            response, sealer, config.region, citizen, lifetime=minutes * 60, secure=_secure(request)
        )
        return response

    @table.post("/citizen/logout")
    async def logout(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        citizen = await citizen_session(request)
        response = redirect("/query")
        if citizen is not None and citizen.csrf_ok(form.get("csrf")):
            # Ended for every copy of the cookie, not only this browser's.
            await end_session(request.app[DATABASE], citizen)
            session.clear_session(response, request.app[CONFIG].region, secure=_secure(request))
        return response

    return table
