"""Talking to the identity provider: its discovery document, its keys (JWKS) and its token
endpoint. Everything it answers is bounded in size and time; a provider that does not answer
properly is ``identity_provider_unavailable``, never a verified citizen."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from node.http_answers import read_answer
from node.identity.config import IdentitySettings
from node.identity.errors import IdentityError, IdentityErrorCode
from node.identity.verification import KeySet, VerifiedIdentity, unverified_kid, verify_id_token

log = logging.getLogger(__name__)

#: Largest answer read from the provider, bytes.
MAX_ANSWER = 256 * 1024
#: An unknown ``kid`` makes us fetch the JWKS again at most this often, seconds (so tokens
#: with made-up kids cannot make the node hammer the provider).
REFRESH_INTERVAL = 60.0
#: Keys are fetched again after this long in any case, seconds.
KEYS_MAX_AGE = 3600.0
TIMEOUT = aiohttp.ClientTimeout(total=10)

C = IdentityErrorCode
DOWN = "统一身份认证服务暂不可用，请稍后再试"
MISCONFIGURED = "统一身份认证服务配置有误，请联系管理员"


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    jwks: str


class RelyingParty:
    """This node as a client of the provider: discovery, keys, code exchange, verification."""

    def __init__(
        self,
        settings: IdentitySettings,
        base_dir: Path,
        *,
        redirect_uri: str,
        http: aiohttp.ClientSession | None = None,
        clock: Any = time.time,
    ) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self.redirect_uri = redirect_uri
        self._http = http
        self._own_http = http is None
        self.clock = clock
        self._endpoints: Endpoints | None = None
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.settings.configured

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
        self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._http

    # -- the provider's documents ----------------------------------------------------------

    async def _get_json(self, url: str) -> Any:
        try:
            async with self._session().get(url, timeout=TIMEOUT) as resp:
                # All of it (content.read(n) gives what has arrived so far), up to the bound.
                body = await read_answer(resp, MAX_ANSWER)
                if resp.status != 200 or body is None:
                    raise IdentityError(C.PROVIDER_UNAVAILABLE, DOWN)
                return json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("identity provider: %s answered badly (%s)", url, type(exc).__name__)
            raise IdentityError(C.PROVIDER_UNAVAILABLE, DOWN) from exc

    async def endpoints(self) -> Endpoints:
        """The provider's endpoints: configured, else from its discovery document (whose
        ``issuer`` must be the configured one)."""
        if self._endpoints is not None:
            return self._endpoints
        s = self.settings
        found: dict[str, Any] = {}
        if not (s.authorization_endpoint and s.token_endpoint and (s.jwks_url or s.jwks_file)):
            found = await self._get_json(s.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if not isinstance(found, dict) or found.get("issuer") != s.issuer:
                log.warning("identity provider: discovery names another issuer")
                raise IdentityError(C.PROVIDER_UNAVAILABLE, MISCONFIGURED)
        endpoints = Endpoints(
            authorization=s.authorization_endpoint or str(found.get("authorization_endpoint", "")),
            token=s.token_endpoint or str(found.get("token_endpoint", "")),
            jwks=s.jwks_url or str(found.get("jwks_uri", "")),
        )
        if not endpoints.authorization or not endpoints.token:
            raise IdentityError(C.PROVIDER_UNAVAILABLE, MISCONFIGURED)
        self._endpoints = endpoints
        return endpoints

    async def key_set(self, kid: str | None) -> KeySet:
        """The provider's keys; fetched again when stale, or when ``kid`` is unknown and the
        last fetch is older than REFRESH_INTERVAL."""
        async with self._lock:
            now = self.clock()
            known = self._keys is not None and (kid is None or self._keys.find(kid) is not None)
            fresh = now - self._keys_at < KEYS_MAX_AGE
            if self._keys is not None and known and fresh:
                return self._keys
            if self._keys is not None and now - self._keys_at < REFRESH_INTERVAL:
                return self._keys
            try:
                self._keys = KeySet.from_jwks(await self._jwks_document())
            except ValueError as exc:
                raise IdentityError(C.PROVIDER_UNAVAILABLE, MISCONFIGURED) from exc
            self._keys_at = now
            return self._keys

    async def _jwks_document(self) -> Any:
        """The provider's JWKS as parsed JSON: from ``jwks_file`` when one is configured (a
        file that cannot be read or parsed is a misconfigured provider), else fetched."""
        path = self.settings.jwks_path(self.base_dir)
        if path is None:
            url = (await self.endpoints()).jwks
            if not url:
                raise IdentityError(C.PROVIDER_UNAVAILABLE, MISCONFIGURED)
            return await self._get_json(url)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("identity provider: jwks_file does not load (%s)", type(exc).__name__)
            raise IdentityError(C.PROVIDER_UNAVAILABLE, MISCONFIGURED) from exc

    # -- verifying --------------------------------------------------------------------------

    async def verify(self, token: str, *, nonce: str | None) -> VerifiedIdentity:
        """The citizen ``token`` vouches for (IdentityError otherwise)."""
        if len(token) > 16 * 1024:
            raise IdentityError(C.TOKEN_MALFORMED)
        keys = await self.key_set(unverified_kid(token))
        return verify_id_token(
            token, keys=keys, settings=self.settings, now=self.clock(), nonce=nonce
        )

    # -- the authorization code flow -------------------------------------------------------

    async def authorization_url(self, *, state: str, nonce: str, challenge: str) -> str:
        endpoint = (await self.endpoints()).authorization
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.settings.scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def exchange(self, code: str, verifier: str) -> str:
        """The ID token the token endpoint gives for ``code`` (PKCE ``verifier``)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.settings.client_id,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        secret = self.settings.client_secret(self.base_dir)
        if secret:
            pair = f"{_form_escape(self.settings.client_id)}:{_form_escape(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        endpoint = (await self.endpoints()).token
        try:
            async with self._session().post(
                endpoint, data=form, headers=headers, timeout=TIMEOUT
            ) as resp:
                body = await read_answer(resp, MAX_ANSWER)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("identity provider: token endpoint unreachable (%s)", type(exc).__name__)
            raise IdentityError(C.PROVIDER_UNAVAILABLE, DOWN) from exc
        if status != 200 or body is None:
            # 400 invalid_grant: a code used twice, expired, or a PKCE verifier that does not fit.
            log.warning("identity provider: token endpoint answered %s", status)
            raise IdentityError(C.LOGIN_FAILED, "登录未完成，请重新登录")
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise IdentityError(C.PROVIDER_UNAVAILABLE, DOWN) from exc
        token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise IdentityError(C.LOGIN_FAILED, "登录未完成，请重新登录")
        return token


def _form_escape(value: str) -> str:
    """RFC 6749 2.3.1: client id and secret are form-urlencoded before Basic authentication."""
    return urlencode({"": value})[1:]
