"""Verifying an OpenID Connect ID token (pure: keys, settings and ``now`` are passed in).

The checks, in order: the header parses; ``alg`` is one of the configured asymmetric
algorithms (never ``none``, never HS*); the ``kid`` names a key of the provider's JWKS whose
type fits ``alg`` (RSA for RS256, P-256 for ES256, Ed25519 for EdDSA), so a token cannot pick
how its key is used; then PyJWT checks the signature with that key and only that algorithm,
``iss``, ``aud``, ``exp``, ``iat`` and ``nbf`` (with the leeway); then ``azp`` when the token
has several audiences, the ``nonce`` of our login (or, for a bearer token, its age), and the
claims that carry the citizen's name and ID number.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK

from node.identity.config import SAFE_ALGORITHMS, IdentitySettings
from node.identity.errors import IdentityError, IdentityErrorCode
from protocol.identifiers import check_id

C = IdentityErrorCode

#: The key type (and curve) each algorithm must be used with.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class VerifiedIdentity:
    """A citizen as the provider vouches for them."""

    name: str
    id_number: str
    issuer: str
    subject: str
    issued_at: float


@dataclass(frozen=True)
class ProviderKey:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any


class KeySet:
    """The usable signing keys of a JWKS document (others are skipped: ``use`` other than
    ``sig``, key types we never accept, RSA keys under 2048 bits)."""

    def __init__(self, keys: list[ProviderKey]) -> None:
        self.keys = keys

    @classmethod
    def from_jwks(cls, document: Any) -> KeySet:
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("a JWKS document has a list of keys")
        keys = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            kty, crv, alg = entry.get("kty"), entry.get("crv"), entry.get("alg")
            if not isinstance(kty, str) or kty not in {k for k, _ in KEY_TYPES.values()}:
                continue
            if alg is not None and alg not in SAFE_ALGORITHMS:
                continue
            try:
                parsed = PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
            if kty == "RSA" and getattr(parsed.key, "key_size", 0) < MIN_RSA_BITS:
                continue
            kid = entry.get("kid")
            keys.append(
                ProviderKey(kid if isinstance(kid, str) else None, kty, crv, alg, parsed.key)
            )
        return cls(keys)

    def find(self, kid: str | None) -> ProviderKey | None:
        if kid is None:
            return self.keys[0] if len(self.keys) == 1 else None
        for key in self.keys:
            if key.kid == kid:
                return key
        return None


def unverified_kid(token: str) -> str | None:
    """The ``kid`` a token names (to decide whether the key set needs a refresh)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return kid if isinstance(kid, str) else None


def verify_id_token(
    token: str,
    *,
    keys: KeySet,
    settings: IdentitySettings,
    now: float,
    nonce: str | None,
) -> VerifiedIdentity:
    """The citizen an ID token vouches for, or IdentityError with the reason's code.

    ``nonce``: the one our login sent (pages); None for a bearer token, which must then be at
    most ``settings.bearer_max_age`` old."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise IdentityError(C.TOKEN_MALFORMED) from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in settings.algorithms or alg not in KEY_TYPES:
        raise IdentityError(C.TOKEN_ALGORITHM)
    kid = header.get("kid")
    key = keys.find(kid if isinstance(kid, str) else None)
    if key is None:
        raise IdentityError(C.TOKEN_KEY_UNKNOWN)
    kty, crv = KEY_TYPES[alg]
    if key.kty != kty or (crv is not None and key.crv != crv) or key.alg not in (None, alg):
        raise IdentityError(C.TOKEN_ALGORITHM)
    claims = _decode(token, key.key, alg, settings, now)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != settings.client_id:
        raise IdentityError(C.TOKEN_AUDIENCE)
    issued_at = float(claims["iat"])
    if nonce is not None:
        given = claims.get("nonce")
        if not isinstance(given, str) or not hmac.compare_digest(given, nonce):
            raise IdentityError(C.TOKEN_NONCE)
    elif now - issued_at > settings.bearer_max_age + settings.leeway:
        raise IdentityError(C.TOKEN_TOO_OLD, "身份凭证已过时，请重新登录")
    return VerifiedIdentity(
        name=_name(claims, settings.name_claim),
        id_number=_id_number(claims, settings.id_number_claim),
        issuer=str(claims["iss"]),
        subject=_subject(claims),
        issued_at=issued_at,
    )


def _decode(
    token: str, key: Any, alg: str, settings: IdentitySettings, now: float
) -> dict[str, Any]:
    errors: list[tuple[type[Exception], IdentityErrorCode]] = [
        (jwt.ExpiredSignatureError, C.TOKEN_EXPIRED),
        (jwt.ImmatureSignatureError, C.TOKEN_NOT_YET_VALID),
        (jwt.InvalidIssuerError, C.TOKEN_ISSUER),
        (jwt.InvalidAudienceError, C.TOKEN_AUDIENCE),
        (jwt.InvalidSignatureError, C.TOKEN_SIGNATURE),
        (jwt.MissingRequiredClaimError, C.TOKEN_CLAIMS),
        (jwt.InvalidAlgorithmError, C.TOKEN_ALGORITHM),
    ]
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=settings.client_id,
            issuer=settings.issuer,
            leeway=settings.leeway,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            # PyJWT reads the time itself; ``now`` is checked below as well, so a caller's
            # clock (tests, a shifted demo clock) decides too.
        )
    except jwt.PyJWTError as exc:
        for kind, code in errors:
            if isinstance(exc, kind):
                raise IdentityError(code) from exc
        raise IdentityError(C.TOKEN_MALFORMED) from exc
    _check_times(claims, settings, now)
    return claims


def _check_times(claims: Mapping[str, Any], settings: IdentitySettings, now: float) -> None:
    for name in ("exp", "iat", "nbf"):
        if name in claims and (
            isinstance(claims[name], bool) or not isinstance(claims[name], int | float)
        ):
            raise IdentityError(C.TOKEN_CLAIMS)
    if float(claims["exp"]) <= now - settings.leeway:
        raise IdentityError(C.TOKEN_EXPIRED, "身份凭证已过期，请重新登录")
    for name in ("iat", "nbf"):
        if name in claims and float(claims[name]) > now + settings.leeway:
            raise IdentityError(C.TOKEN_NOT_YET_VALID)


def _name(claims: Mapping[str, Any], claim: str) -> str:
    value = claims.get(claim)
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 100:
        raise IdentityError(C.TOKEN_CLAIMS)
    return value.strip()


def _id_number(claims: Mapping[str, Any], claim: str) -> str:
    value = claims.get(claim)
    if not isinstance(value, str):
        raise IdentityError(C.TOKEN_CLAIMS)
    number = value.strip().upper()
    if check_id("resident_id", number) is not None:
        raise IdentityError(C.TOKEN_CLAIMS)
    return number


def _subject(claims: Mapping[str, Any]) -> str:
    value = claims.get("sub")
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        raise IdentityError(C.TOKEN_CLAIMS)
    return value
