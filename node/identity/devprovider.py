"""A DEVELOPMENT OpenID Connect provider, for the demo and tests only: it vouches for whoever
picks a name on its page. It stands in for the province's unified identity service
(统一身份认证) so that 全程网办 can be shown on one machine; nothing else starts it
(``tongban demo`` does, on loopback). Never point a real node at it.

What it does is what the node's relying party needs, done properly: a discovery document,
its JWKS (keys made at start, never written anywhere), an authorize page (authorization code
flow; a registered ``redirect_uri`` only; PKCE S256 required), and a token endpoint that
gives each code once, checks the PKCE verifier and signs an ID token (``iss``, ``aud``,
``sub``, ``iat``, ``exp``, ``nonce``, ``name``, ``id_number``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from protocol.identifiers import check_id

LABEL = "开发用身份认证服务（仅供演示与测试，非真实统一身份认证）"
CODE_LIFETIME = 120.0
TOKEN_LIFETIME = 300.0


@dataclass(frozen=True)
class Client:
    client_id: str
    redirect_uris: frozenset[str]
    #: None: a public client (PKCE only).
    secret: str | None = None


@dataclass(frozen=True)
class Person:
    name: str
    id_number: str


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    person: Person
    expires: float
    used: bool = False


def _signing_key(alg: str) -> tuple[Any, dict[str, Any]]:
    """A new private key for ``alg`` and its public JWK."""
    if alg == "RS256":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        raise ValueError(f"unsupported algorithm {alg}")
    return key, jwk


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class DevProvider:
    """The provider; ``issuer`` is the URL it is served at (set before serving)."""

    issuer: str
    clients: dict[str, Client] = field(default_factory=dict)
    people: tuple[Person, ...] = ()
    alg: str = "RS256"
    clock: Any = time.time
    _key: Any = None
    _jwk: dict[str, Any] = field(default_factory=dict)
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    def __post_init__(self) -> None:
        self._key, jwk = _signing_key(self.alg)
        self._jwk = {**jwk, "kid": f"dev-{self.alg.lower()}-{secrets.token_hex(4)}", "use": "sig"}
        self._jwk["alg"] = self.alg

    def register(self, client_id: str, redirect_uri: str, secret: str | None = None) -> None:
        known = self.clients.get(client_id)
        uris = (known.redirect_uris if known else frozenset()) | {redirect_uri}
        self.clients[client_id] = Client(client_id, frozenset(uris), secret)

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._jwk)]}

    def subject(self, person: Person) -> str:
        return hmac.new(self._salt, person.id_number.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(
        self,
        person: Person,
        audience: str,
        *,
        nonce: str | None = None,
        lifetime: float = TOKEN_LIFETIME,
    ) -> str:
        """An ID token for ``person`` (the token endpoint's; the demo's seeding uses it too)."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": self.subject(person),
            "iat": now,
            "auth_time": now,
            "exp": now + int(lifetime),
            "name": person.name,
            "id_number": person.id_number,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(claims, self._key, algorithm=self.alg, headers={"kid": self._jwk["kid"]})

    # -- the HTTP side -------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize_page)
        app.router.add_post("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": [self.alg],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
                "scopes_supported": ["openid", "profile"],
                "claims_supported": ["sub", "name", "id_number"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.jwks)

    def _client_request(self, params: Any) -> tuple[dict[str, str], str | None]:
        """The authorization request's parameters, and what is wrong with them (None: fine)."""
        wanted = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce")
        values = {k: str(params.get(k, "")) for k in (*wanted, "code_challenge")}
        values["code_challenge_method"] = str(params.get("code_challenge_method", ""))
        client = self.clients.get(values["client_id"])
        if client is None or values["redirect_uri"] not in client.redirect_uris:
            return values, "unknown client or redirect_uri"
        if values["response_type"] != "code" or "openid" not in values["scope"].split():
            return values, "unsupported_response_type"
        if values["code_challenge_method"] != "S256" or len(values["code_challenge"]) != 43:
            return values, "PKCE S256 required"
        return values, None

    def _page(self, body: str, status: int = 200) -> web.Response:
        origins = sorted(
            {
                f"{urlsplit(uri).scheme}://{urlsplit(uri).netloc}"
                for client in self.clients.values()
                for uri in client.redirect_uris
            }
        )
        text = (
            '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{LABEL}</title></head><body>{body}</body></html>"
        )
        return web.Response(
            text=text,
            status=status,
            content_type="text/html",
            headers={
                "Content-Security-Policy": "default-src 'none'; form-action 'self' "
                + " ".join(origins)
                + "; frame-ancestors 'none'; base-uri 'none'",
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def _authorize_page(self, request: web.Request) -> web.Response:
        values, problem = self._client_request(request.query)
        if problem is not None:
            return self._page(f"<h1>{LABEL}</h1><p>请求无效：{html.escape(problem)}</p>", 400)
        return self._page(self._form(values))

    def _form(self, values: dict[str, str], error: str = "") -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in values.items()
        )
        choices = "".join(
            f'<p><label><input type="radio" name="person" value="{i}"'
            f"{' checked' if i == 0 else ''}> {html.escape(p.name)}"
            f"（{html.escape(p.id_number[:6])}…{html.escape(p.id_number[-4:])}）</label></p>"
            for i, p in enumerate(self.people)
        )
        other = (
            '<p><label><input type="radio" name="person" value="other"'
            f"{'' if self.people else ' checked'}> 其他人：</label></p>"
            '<p><label>姓名 <input name="name" maxlength="50"></label></p>'
            '<p><label>身份证号码 <input name="id_number" maxlength="18"></label></p>'
        )
        problem = f'<p role="alert">{html.escape(error)}</p>' if error else ""
        return (
            f"<h1>{LABEL}</h1>"
            "<p><strong>此服务仅用于开发演示：任何人都可以选择任意身份登录。</strong></p>"
            f"<p>应用 {html.escape(values['client_id'])} 请求您的姓名和身份证号码。</p>"
            f'{problem}<form method="post" action="/authorize">{hidden}{choices}{other}'
            '<p><button type="submit">同意并登录</button></p></form>'
        )

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        values, problem = self._client_request(form)
        if problem is not None:
            return self._page(f"<h1>{LABEL}</h1><p>请求无效：{html.escape(problem)}</p>", 400)
        choice = str(form.get("person", ""))
        if choice.isdigit() and int(choice) < len(self.people):
            person = self.people[int(choice)]
        else:
            name = str(form.get("name", "")).strip()
            number = str(form.get("id_number", "")).strip().upper()
            if not name or check_id("resident_id", number) is not None:
                return self._page(self._form(values, "请填写姓名和有效的身份证号码"), 400)
            person = Person(name[:50], number)
        now = self.clock()
        for stale in [c for c, g in self._grants.items() if g.expires < now]:
            del self._grants[stale]
        code = secrets.token_urlsafe(32)
        self._grants[code] = _Grant(
            client_id=values["client_id"],
            redirect_uri=values["redirect_uri"],
            challenge=values["code_challenge"],
            nonce=values["nonce"] or None,
            person=person,
            expires=self.clock() + CODE_LIFETIME,
        )
        query = urlencode({"code": code, "state": values["state"]})
        raise web.HTTPFound(f"{values['redirect_uri']}?{query}")

    def _client_of(self, request: web.Request, form: Any) -> Client | None:
        """The client making a token request: Basic authentication for a confidential client,
        ``client_id`` alone for a public one."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                pair = base64.b64decode(header[6:]).decode()
            except ValueError:
                return None
            # Both halves are form-encoded before they are joined (RFC 6749 2.3.1).
            client_id, _, secret = (unquote_plus(half) for half in pair.partition(":"))
            client = self.clients.get(client_id)
            if client is None or client.secret is None:
                return None
            return client if hmac.compare_digest(secret, client.secret) else None
        client = self.clients.get(str(form.get("client_id", "")))
        return client if client is not None and client.secret is None else None

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()

        def refuse(error: str, status: int = 400) -> web.Response:
            return web.json_response({"error": error}, status=status)

        client = self._client_of(request, form)
        if client is None:
            return refuse("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type")
        grant = self._grants.get(str(form.get("code", "")))
        if grant is None or grant.used or grant.expires < self.clock():
            return refuse("invalid_grant")
        grant.used = True  # once, whatever follows
        verifier = str(form.get("code_verifier", ""))
        if (
            grant.client_id != client.client_id
            or grant.redirect_uri != str(form.get("redirect_uri", ""))
            or not 43 <= len(verifier) <= 128
            or not hmac.compare_digest(s256(verifier), grant.challenge)
        ):
            return refuse("invalid_grant")
        token = self.issue(grant.person, client.client_id, nonce=grant.nonce)
        return web.json_response(
            {
                "access_token": secrets.token_urlsafe(32),
                "token_type": "Bearer",
                "expires_in": int(TOKEN_LIFETIME),
                "id_token": token,
            },
            headers={"Cache-Control": "no-store"},
        )


@dataclass
class RunningProvider:
    provider: DevProvider
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serve(provider: DevProvider, host: str, port: int) -> RunningProvider:
    """Serve ``provider`` at ``host:port`` (its ``issuer`` must be that URL)."""
    runner = web.AppRunner(provider.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return RunningProvider(provider, runner)
