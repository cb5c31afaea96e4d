"""Request tokens: a sender's signed permission slip for one blob upload (docs/protocol.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import claims as c
from protocol import jws
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import KeySet

TYP = "tongban-request+jwt"
CLAIMS = frozenset({"iss", "aud", "iat", "exp", "jti", "sha256"})
MAX_TOKEN_BYTES = 4096
#: Lifetime of a fresh request token: long enough for a slow upload, short enough to be useless
#: if it leaks.
DEFAULT_LIFETIME = 600


@dataclass(frozen=True)
class RequestToken:
    iss: str
    aud: str
    jti: str
    sha256: str


def sign_request_token(
    *, iss: str, aud: str, sha256: str, now: float, key: Ed25519PrivateKey, kid: str
) -> str:
    iat = int(now)
    claims = {
        "iss": iss,
        "aud": aud,
        "iat": iat,
        "exp": iat + DEFAULT_LIFETIME,
        "jti": str(uuid.uuid4()),
        "sha256": sha256,
    }
    return jws.sign(claims, key, kid=kid, typ=TYP)


def verify_request_token(
    token: str, keys: KeySet, *, recipient: str, sha256: str, now: float
) -> RequestToken:
    """Any fault is ``token_invalid``; the detail says which check failed."""
    try:
        parsed = jws.parse(token, typ=TYP, max_size=MAX_TOKEN_BYTES)
        claims = parsed.claims
        c.require_exact(claims, CLAIMS, "request token")
        iss = c.region(claims, "iss")
        iat = c.integer(claims, "iat")
        key = keys.resolve(parsed.kid, iss, iat)
        jws.check_signature(parsed, key.public_key)
        if c.region(claims, "aud") != recipient:
            raise ProtocolError(ErrorCode.WRONG_AUDIENCE, "aud is not this node")
        c.lifetime(iat, c.integer(claims, "exp"), now)
        c.uuid_text(claims, "jti")
        if c.sha256_hex(claims, "sha256") != sha256:
            raise ProtocolError(ErrorCode.INVALID_CLAIMS, "token is for another blob")
    except ProtocolError as exc:
        raise ProtocolError(ErrorCode.TOKEN_INVALID, f"{exc.code}: {exc.detail}") from exc
    return RequestToken(iss=iss, aud=claims["aud"], jti=claims["jti"], sha256=sha256)
