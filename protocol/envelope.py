"""Case envelopes: the signed messages nodes exchange (docs/protocol.md)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import claims as c
from protocol import jws
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import KeySet, b64url_decode
from protocol.messages import validate_blobs, validate_body

TYP = "tongban-envelope+jwt"
#: Largest envelope a node accepts, in bytes of the compact serialization.
MAX_ENVELOPE_BYTES = 1024 * 1024
#: Lifetime given to new envelopes: the longest the contract allows.
DEFAULT_LIFETIME = c.MAX_LIFETIME
CLAIMS = frozenset({"iss", "aud", "jti", "iat", "exp", "typ", "xt", "seq", "body", "blobs"})
XT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


@dataclass(frozen=True)
class Envelope:
    """A verified envelope: its claims and the exact bytes it arrived as."""

    iss: str
    aud: str
    jti: str
    iat: int
    exp: int
    typ: str
    xt: str
    seq: int
    body: dict[str, Any]
    blobs: list[dict[str, Any]]
    kid: str
    compact: bytes
    digest: str

    @property
    def blob_digests(self) -> list[str]:
        return [b["sha256"] for b in self.blobs]


def new_claims(
    *,
    iss: str,
    aud: str,
    typ: str,
    xt: str,
    seq: int,
    body: dict[str, Any],
    blobs: list[dict[str, Any]] | None = None,
    now: float,
    lifetime: int = DEFAULT_LIFETIME,
    jti: str | None = None,
) -> dict[str, Any]:
    """Claims of a new envelope, with a fresh ``jti`` unless one is given (a re-issue keeps
    ``xt`` and ``seq`` and takes a new ``jti``)."""
    iat = int(now)
    return {
        "iss": iss,
        "aud": aud,
        "jti": jti or str(uuid.uuid4()),
        "iat": iat,
        "exp": iat + lifetime,
        "typ": typ,
        "xt": xt,
        "seq": seq,
        "body": body,
        "blobs": list(blobs or []),
    }


def sign_envelope(claims: dict[str, Any], key: Ed25519PrivateKey, kid: str) -> str:
    """Check ``claims`` against the schema, then sign them. Refuses to sign what a partner
    would refuse."""
    _check_claims(claims)
    return jws.sign(claims, key, kid=kid, typ=TYP)


def parse_envelope(token: bytes | str) -> jws.ParsedJWS:
    return jws.parse(token, typ=TYP, max_size=MAX_ENVELOPE_BYTES)


def reopen_envelope(token: str) -> Envelope:
    """The Envelope of a token that was verified completely when it arrived and has been
    kept since (sealed, so unchanged): its JSON decoded without the strict parser's checks,
    which it passed then. Never for a token from outside (use ``verify_envelope``)."""
    header_b64, claims_b64, _signature = token.split(".")
    compact = token.encode("ascii")
    return _envelope(
        json.loads(b64url_decode(claims_b64)),
        kid=str(json.loads(b64url_decode(header_b64))["kid"]),
        compact=compact,
        digest=hashlib.sha256(compact).hexdigest(),
    )


def verify_envelope(
    token: bytes | str,
    keys: KeySet,
    *,
    recipient: str | None,
    now: float,
    check_time: bool = True,
) -> Envelope:
    """Verify ``token`` completely, in the order docs/protocol.md gives.

    ``recipient`` is this node's region (``None`` to skip the audience check, as an archive
    audit does); ``check_time=False`` skips expiry, for re-verifying stored envelopes later.
    """
    parsed = parse_envelope(token)
    return verify_parsed(parsed, keys, recipient=recipient, now=now, check_time=check_time)


def verify_parsed(
    parsed: jws.ParsedJWS,
    keys: KeySet,
    *,
    recipient: str | None,
    now: float,
    check_time: bool = True,
) -> Envelope:
    claims = parsed.claims
    issuer = c.region(claims, "iss")
    iat = c.integer(claims, "iat")
    key = keys.resolve(parsed.kid, issuer, iat)
    jws.check_signature(parsed, key.public_key)
    _check_claims(claims)
    if recipient is not None and claims["aud"] != recipient:
        raise ProtocolError(ErrorCode.WRONG_AUDIENCE, f"aud is not {recipient}")
    if check_time:
        c.lifetime(claims["iat"], claims["exp"], now)
    return _envelope(claims, kid=parsed.kid, compact=parsed.compact, digest=parsed.digest)


def _envelope(claims: dict[str, Any], *, kid: str, compact: bytes, digest: str) -> Envelope:
    return Envelope(
        iss=claims["iss"],
        aud=claims["aud"],
        jti=claims["jti"],
        iat=claims["iat"],
        exp=claims["exp"],
        typ=claims["typ"],
        xt=claims["xt"],
        seq=claims["seq"],
        body=claims["body"],
        blobs=claims["blobs"],
        kid=kid,
        compact=compact,
        digest=digest,
    )


def _check_claims(claims: dict[str, Any]) -> None:
    c.require_exact(claims, CLAIMS, "envelope")
    c.region(claims, "iss")
    c.region(claims, "aud")
    c.uuid_text(claims, "jti")
    iat = c.integer(claims, "iat")
    exp = c.integer(claims, "exp")
    if exp <= iat:
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, "exp must be after iat")
    if exp - iat > c.MAX_LIFETIME:
        raise ProtocolError(ErrorCode.LIFETIME_TOO_LONG, "exp - iat is at most 7 days")
    xt = claims["xt"]
    if not isinstance(xt, str) or not XT_RE.match(xt):
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, "xt is 1-64 characters [A-Za-z0-9._:-]")
    c.integer(claims, "seq", minimum=1)
    if not isinstance(claims["typ"], str):
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, "typ is a message type string")
    if not isinstance(claims["body"], dict):
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, "body is a JSON object")
    validate_blobs(claims["blobs"])
    validate_body(claims["typ"], claims["body"], claims["blobs"])
