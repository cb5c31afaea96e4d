"""Verified identity for online applications (docs/identity.md): ID tokens signed with a
locally made JWKS (RS256 and ES256) are verified with PyJWT; every kind of bad token is
refused with its own code and stores nothing; without a provider online applications are
refused, or, when the operator allows it, kept unverified until staff record a 人证核验; and
the pages' login runs the authorization code flow (state, nonce, PKCE S256) against the
development provider, browser-less."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import func, select

from node.appkeys import CASES, CITIZEN_LIMITER
from node.cases.models import cases
from node.config import ConfigError, NodeConfig
from node.identity.config import IdentitySettings
from node.identity.devprovider import DevProvider, s256
from node.identity.errors import IdentityError
from node.identity.provider import RelyingParty, _form_escape
from node.identity.session import SESSION_PLACE, session_cookie_name, unseal
from node.identity.verification import KeySet, verify_id_token
from tests.support.api import ApiClient, form_login
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.identity import (
    CLIENT_ID,
    LIU_YANG,
    HiddenForm,
    identity_toml,
    running_provider,
    trust,
)
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for, start_regions

ISSUER = "https://ids.hunan.example"
ITEM = "430400-XK-0002"  # 公共场所卫生许可（新办）, offered online by 衡阳市
NUMBER = LIU_YANG.id_number
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS = {
    "keys": [
        {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "rs1", "use": "sig"},
        {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "ec1", "use": "sig"},
    ]
}
SETTINGS = IdentitySettings(issuer=ISSUER, client_id=CLIENT_ID)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "citizen-1",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
        "name": LIU_YANG.name,
        "id_number": NUMBER,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def rs256(body: dict[str, Any], kid: str = "rs1", key: Any = RSA_KEY) -> str:
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def es256(body: dict[str, Any]) -> str:
    return jwt.encode(body, EC_KEY, algorithm="ES256", headers={"kid": "ec1"})


def unsigned(body: dict[str, Any]) -> str:
    return jwt.encode(body, None, algorithm="none", headers={"kid": "rs1"})


def hs256_with_public_key(body: dict[str, Any]) -> str:
    """The classic confusion: the provider's public key (which anyone has) as an HMAC secret."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "kid": "rs1", "typ": "JWT"}).encode()
    )
    payload = jwt.utils.base64url_encode(json.dumps(body).encode())
    signature = hmac.new(pem, header + b"." + payload, hashlib.sha256).digest()
    return (header + b"." + payload + b"." + jwt.utils.base64url_encode(signature)).decode()


def bad_tokens() -> dict[str, tuple[str, str]]:
    """Every bad token and the code that refuses it, made now: made at import, the good
    claims of a token meant to fail otherwise would expire during a long run first."""
    return {
        "wrong issuer": (rs256(claims(iss="https://evil.example")), "identity_token_issuer"),
        "wrong audience": (rs256(claims(aud="another-client")), "identity_token_audience"),
        "expired": (
            rs256(claims(iat=int(time.time()) - 4000, exp=int(time.time()) - 3000)),
            "identity_token_expired",
        ),
        "bad signature": (rs256(claims(), key=OTHER_RSA), "identity_token_signature"),
        "unknown kid": (rs256(claims(), kid="nobody"), "identity_token_key_unknown"),
        "alg none": (unsigned(claims()), "identity_token_algorithm"),
        "HS256 with the public key": (hs256_with_public_key(claims()), "identity_token_algorithm"),
        "issued in the future": (
            rs256(claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 4000)),
            "identity_token_not_yet_valid",
        ),
        "no ID number": (rs256(claims(id_number=None)), "identity_token_claims"),
        "malformed ID number": (
            rs256(claims(id_number="110105194912310021")),
            "identity_token_claims",
        ),
        "not a token": ("abc.def", "identity_token_malformed"),
    }


def test_a_valid_token_of_either_algorithm_is_accepted() -> None:
    keys = KeySet.from_jwks(JWKS)
    for token in (rs256(claims()), es256(claims())):
        who = verify_id_token(token, keys=keys, settings=SETTINGS, now=time.time(), nonce="n-1")
        assert (who.name, who.id_number, who.issuer) == (LIU_YANG.name, NUMBER, ISSUER)


def test_every_bad_token_is_refused_with_its_code() -> None:
    keys = KeySet.from_jwks(JWKS)
    cases_ = {**bad_tokens(), "wrong nonce": (rs256(claims(nonce="n-2")), "identity_token_nonce")}
    for what, (token, code) in cases_.items():
        with pytest.raises(IdentityError) as refused:
            verify_id_token(token, keys=keys, settings=SETTINGS, now=time.time(), nonce="n-1")
        assert refused.value.code == code, what
    # A bearer token carries no nonce of ours: its age bounds a replay instead.
    old = rs256(claims(iat=int(time.time()) - 1200, exp=int(time.time()) + 300))
    with pytest.raises(IdentityError) as refused:
        verify_id_token(old, keys=keys, settings=SETTINGS, now=time.time(), nonce=None)
    assert refused.value.code == "identity_token_too_old"
    # ES256 only with an EC key: a token naming the RSA key's kid with ES256 is refused.
    mixed = jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "rs1"})
    with pytest.raises(IdentityError) as refused:
        verify_id_token(mixed, keys=keys, settings=SETTINGS, now=time.time(), nonce="n-1")
    assert refused.value.code == "identity_token_algorithm"


def test_the_identity_settings_refuse_secrets_and_unsafe_algorithms(tmp_path: Path) -> None:
    base = {"region": "430400", "name": "衡阳市", "url": "http://127.0.0.1:1"}
    for bad in (
        {"issuer": ISSUER, "client_id": "x", "client_secret": "s3cret"},
        {"issuer": ISSUER, "client_id": "x", "algorithms": ["HS256"]},
        {"issuer": ISSUER, "client_id": "x", "algorithms": ["none"]},
        {"issuer": ISSUER},
        {"issuer": ISSUER, "client_id": "x", "surprise": 1},
    ):
        with pytest.raises(ConfigError):
            NodeConfig.from_dict(tmp_path, {**base, "identity": bad})
    config = NodeConfig.from_dict(tmp_path, base)
    assert not config.identity.configured and not config.identity.allow_unverified_online


async def test_a_jwks_file_that_does_not_load_is_a_provider_unavailable(tmp_path: Path) -> None:
    """A provider's keys handed over as a file: a missing or broken file refuses the token
    with ``identity_provider_unavailable`` (503), like a provider that does not answer,
    never an unexpected error."""
    settings = IdentitySettings(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        authorization_endpoint=f"{ISSUER}/authorize",
        token_endpoint=f"{ISSUER}/token",
        jwks_file="ids-jwks.json",
    )
    token = rs256(claims())
    for content in (None, "{not json", "[]"):
        path = tmp_path / "ids-jwks.json"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_text(content)
        rp = RelyingParty(settings, tmp_path, redirect_uri="http://127.0.0.1/citizen/callback")
        with pytest.raises(IdentityError) as refused:
            await rp.verify(token, nonce="n-1")
        assert refused.value.code == "identity_provider_unavailable", content
        assert refused.value.status == 503
    (tmp_path / "ids-jwks.json").write_text(json.dumps(JWKS))
    rp = RelyingParty(settings, tmp_path, redirect_uri="http://127.0.0.1/citizen/callback")
    assert (await rp.verify(token, nonce="n-1")).id_number == NUMBER


def test_the_dev_provider_decodes_form_encoded_client_credentials() -> None:
    """RFC 6749 2.3.1: the relying party form-encodes client id and secret before Basic
    authentication (node/identity/provider.py); the development provider decodes them, so a
    secret with ``+``, ``/`` or ``=`` authenticates."""
    provider = DevProvider(issuer=ISSUER, alg="ES256")
    provider.register("node-1", "http://127.0.0.1/citizen/callback", secret="a+b/c=d%e")
    for secret, known in (("a+b/c=d%e", True), ("a b/c=d%e", False)):
        pair = f"{_form_escape('node-1')}:{_form_escape(secret)}".encode()
        header = "Basic " + base64.b64encode(pair).decode()
        request = make_mocked_request("POST", "/token", headers={"Authorization": header})
        client = provider._client_of(request, {})
        assert (client is not None and client.client_id == "node-1") is known, secret


# -- on a running node ----------------------------------------------------------------------


async def _count(node: RunningNode) -> int:
    async with node.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(cases))).scalar_one())


async def _application(citizen: ApiClient, **applicant: Any) -> dict[str, Any]:
    item = await citizen.ok("GET", f"/api/v1/catalog/{ITEM}")
    return {
        "item_code": ITEM,
        "applicant": {"phone": "13973900002", **applicant},
        "form": form_for(item, business_name="刘洋足浴店"),
        "materials": await materials_for(citizen, item, public=True),
        "delivery": {"method": "window", "address": None},
    }


@pytest.fixture
async def trusting(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[RunningNode]:
    """衡阳市, trusting the JWKS above (handed over as a file)."""
    (tmp_path / "430400").mkdir(mode=0o700)
    (tmp_path / "430400" / "ids-jwks.json").write_text(json.dumps(JWKS))
    toml = identity_toml(ISSUER) + 'jwks_file = "ids-jwks.json"\n'
    [node] = await start_regions(tmp_path, databases, [("430400", "衡阳市")], extra_toml=toml)
    # Every bad token below is one more application from this client: lift the per-client
    # limit (tests/test_files.py checks the limiter itself).
    limiter = node.app[CITIZEN_LIMITER]  # type: ignore[index]
    limiter.burst, limiter.rate_per_second = 100.0, 10.0
    yield node
    await node.stop()


async def test_online_applications_carry_the_verified_identity(trusting: RunningNode) -> None:
    node = trusting
    async with aiohttp.ClientSession() as http:
        citizen = ApiClient(node.url, http)
        body = await _application(citizen)
        before = await _count(node)
        for what, (token, code) in bad_tokens().items():
            citizen.token = token
            status, answer = await citizen.call("POST", "/api/v1/public/applications", body)
            assert (status, answer["error"]) == (401, code), what
        citizen.token = None
        status, answer = await citizen.call("POST", "/api/v1/public/applications", body)
        assert (status, answer["error"]) == (403, "identity_required")
        # A body naming someone else is refused, not quietly corrected.
        citizen.token = rs256(claims(nonce=None))
        for other in ({"name": "周敏"}, {"id_number": "110105194912310021"}, {"kind": "org"}):
            wrong = {**body, "applicant": {**body["applicant"], **other}}
            status, answer = await citizen.call("POST", "/api/v1/public/applications", wrong)
            assert (status, answer["error"]) == (403, "identity_mismatch"), other
        assert await _count(node) == before
        # The identity fills in the applicant: name and ID number come from the token only.
        created = await citizen.ok("POST", "/api/v1/public/applications", body, status=201)
        citizen.token = es256(claims(nonce=None))
        named = {**body, "applicant": {**body["applicant"], "name": "刘洋", "id_number": NUMBER}}
        await citizen.ok("POST", "/api/v1/public/applications", named, status=201)
        assert await _count(node) == before + 2
        approver = await ApiClient(node.url, http).login("approver")
        case = await approver.ok("GET", f"/api/v1/cases/{created['case']['id']}")
        assert case["applicant_name"] == "刘洋"
        assert case["application"]["identity_verified"] is True
        assert case["application"]["identity"]["method"] == "oidc"
        assert case["application"]["identity"]["issuer"] == ISSUER
        shown = await approver.act(created["case"]["id"], "reveal", {"reason": "verify"})
        assert shown["revealed"]["id_number"] == NUMBER
        await approver.act(created["case"]["id"], "accept")


async def test_no_provider_refuses_online_applications(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    [node] = await start_regions(tmp_path, databases, [("430400", "衡阳市")])
    try:
        async with aiohttp.ClientSession() as http:
            citizen = ApiClient(node.url, http)
            body = await _application(
                citizen, kind="person", name="刘洋", id_type="resident_id", id_number=NUMBER
            )
            status, answer = await citizen.call("POST", "/api/v1/public/applications", body)
            assert (status, answer["error"]) == (403, "identity_required")
            citizen.token = rs256(claims(nonce=None))
            status, answer = await citizen.call("POST", "/api/v1/public/applications", body)
            assert (status, answer["error"]) == (503, "identity_provider_unavailable")
        assert await _count(node) == 0
    finally:
        await node.stop()


async def test_unverified_online_applications_wait_for_an_identity_check(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    [node] = await start_regions(
        tmp_path,
        databases,
        [("430400", "衡阳市")],
        extra_toml="\n[identity]\nallow_unverified_online = true\n",
    )
    try:
        async with aiohttp.ClientSession() as http:
            citizen = ApiClient(node.url, http)
            body = await _application(
                citizen, kind="person", name="周敏", id_type="resident_id", id_number=NUMBER
            )
            created = await citizen.ok("POST", "/api/v1/public/applications", body, status=201)
            case_id = created["case"]["id"]
            approver = await ApiClient(node.url, http).login("approver")
            clerk = await ApiClient(node.url, http).login("clerk")
            case = await approver.ok("GET", f"/api/v1/cases/{case_id}")
            assert case["application"]["identity_verified"] is False
            refused = await approver.act(case_id, "accept", status=409)
            assert refused["error"] == "identity_not_verified"
            bad = await clerk.act(case_id, "verify_identity", {"method": "guess"}, status=400)
            assert bad["error"] == "invalid_input"
            events = len((await approver.ok("GET", f"/api/v1/cases/{case_id}"))["events"])
            assert events == len(case["events"])
            async with aiohttp.ClientSession(
                cookie_jar=aiohttp.CookieJar(unsafe=True)
            ) as page_http:
                page = await _office_page(page_http, node, case_id)
            assert 'id="identity-check">未核验' in page, page[page.find("<main") :][:1500]
            assert "网上申请，申请人身份未经统一身份认证" in page  # the timeline's first step
            checked = await clerk.act(
                case_id, "verify_identity", {"method": "id_card_reader", "note": "读卡比对一致"}
            )
            identity = checked["application"]["identity"]
            assert identity["method"] == "window" and identity["check"] == "id_card_reader"
            assert identity["checked_by"] == "王芳" and identity["checked_at"]
            assert checked["events"][-1]["action"] == "verify_identity"
            again = await clerk.act(case_id, "verify_identity", {"method": "document"}, status=409)
            assert again["error"] == "identity_already_verified"
            accepted = await approver.act(case_id, "accept")
            assert accepted["status"] == "accepted"
            async with aiohttp.ClientSession(
                cookie_jar=aiohttp.CookieJar(unsafe=True)
            ) as page_http:
                page = await _office_page(page_http, node, case_id)
            assert "已核验（窗口人证核验" in page
            assert "身份证读卡器核验（人证比对）；读卡比对一致" in page  # the timeline
    finally:
        await node.stop()


async def _office_page(http: aiohttp.ClientSession, node: RunningNode, case_id: int) -> str:
    async with await form_login(http, node.url, "approver") as resp:
        assert resp.status == 302
    async with http.get(f"{node.url}/office/cases/{case_id}") as resp:
        assert resp.status == 200
        return await resp.text()


# -- the pages' login: the code flow against the development provider -----------------------


async def test_the_login_runs_the_code_flow_with_state_nonce_and_pkce(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    async with running_provider(alg="ES256") as idp:
        provider = idp.provider
        [node] = await start_regions(
            tmp_path, databases, [("430400", "衡阳市")], extra_toml=identity_toml(provider.issuer)
        )
        trust(provider, node)
        try:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                # To the provider's authorize page, with state, nonce and an S256 challenge.
                async with http.get(f"{node.url}/citizen/login?next=/query%3Fcase%3DX") as resp:
                    assert resp.status == 200 and str(resp.url).startswith(provider.issuer)
                    asked = resp.url.query
                    form = HiddenForm()
                    form.feed(await resp.text())
                assert asked["code_challenge_method"] == "S256"
                assert asked["state"] and asked["nonce"] and len(asked["code_challenge"]) == 43
                assert asked["redirect_uri"] == f"{node.url}/citizen/callback"
                # The citizen picks 刘洋; the provider sends the browser back with a code.
                async with http.post(
                    provider.issuer + form.action,
                    data={**form.fields, "person": "0"},
                    allow_redirects=False,
                ) as resp:
                    assert resp.status == 302
                    back = resp.headers["Location"]
                assert back.startswith(f"{node.url}/citizen/callback?code=")
                # A callback with another state is refused (and ends the login in progress).
                forged = re.sub(r"state=[^&]+", "state=forged", back)
                async with http.get(forged, allow_redirects=False) as resp:
                    assert resp.status == 400
                assert session_cookie_name("430400") not in {c.key for c in jar}
                # Start again and finish: the node exchanges the code with its PKCE verifier.
                async with http.get(f"{node.url}/citizen/login?next=/query%3Fcase%3DX") as resp:
                    form = HiddenForm()
                    form.feed(await resp.text())
                async with http.post(
                    provider.issuer + form.action,
                    data={**form.fields, "person": "0"},
                    allow_redirects=False,
                ) as resp:
                    back = resp.headers["Location"]
                async with http.get(back, allow_redirects=False) as resp:
                    assert resp.status == 302 and resp.headers["Location"] == "/query?case=X"
                    cookie = resp.cookies[session_cookie_name("430400")]
                assert cookie["httponly"] and cookie["samesite"] == "Lax"
                # The session is sealed: no name or ID number in clear, and it opens to them.
                assert NUMBER not in cookie.value and "刘洋" not in cookie.value
                sealer = node.app[CASES].sealer  # type: ignore[index]
                opened = unseal(sealer, cookie.value, SESSION_PLACE)
                assert opened is not None
                assert (opened["name"], opened["id_number"]) == ("刘洋", NUMBER)
                # The same code twice: the provider gives each code once.
                async with http.get(back, allow_redirects=False) as resp:
                    assert resp.status == 400
                # Off-site next is never followed.
                async with http.get(
                    f"{node.url}/citizen/login?next=//evil.example/", allow_redirects=False
                ) as resp:
                    login_cookie = resp.cookies[f"tongban_login_state_{node.config.region}"]
                state = unseal(sealer, login_cookie.value, "identity.login_state")
                assert state is not None and state["next"] == "/query"
            # PKCE is the provider's check too: a code with the wrong verifier gets no token.
            async with aiohttp.ClientSession() as http:
                verifier = "v" * 43
                query = {
                    "client_id": CLIENT_ID,
                    "redirect_uri": f"{node.url}/citizen/callback",
                    "response_type": "code",
                    "scope": "openid",
                    "state": "s",
                    "nonce": "n",
                    "code_challenge": s256(verifier),
                    "code_challenge_method": "S256",
                }
                async with http.post(
                    f"{provider.issuer}/authorize",
                    data={**query, "person": "0"},
                    allow_redirects=False,
                ) as resp:
                    code = re.search(r"code=([^&]+)", resp.headers["Location"]).group(1)  # type: ignore[union-attr]
                token_form = {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": query["redirect_uri"],
                    "client_id": CLIENT_ID,
                    "code_verifier": "w" * 43,
                }
                async with http.post(f"{provider.issuer}/token", data=token_form) as resp:
                    assert resp.status == 400 and (await resp.json())["error"] == "invalid_grant"
        finally:
            await node.stop()
