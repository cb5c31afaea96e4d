"""Receipts: the receiver's signed word that an envelope was authentic, well-formed and
durably stored (docs/protocol.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import claims as c
from protocol import jws
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import KeySet

TYP = "tongban-receipt+jwt"
CLAIMS = frozenset({"iss", "aud", "jti", "iat", "ref", "digest"})
MAX_RECEIPT_BYTES = 4096


@dataclass(frozen=True)
class Receipt:
    iss: str
    aud: str
    jti: str
    iat: int
    ref: str
    digest: str
    compact: bytes


def sign_receipt(
    *, iss: str, aud: str, ref: str, digest: str, now: float, key: Ed25519PrivateKey, kid: str
) -> str:
    claims = {
        "iss": iss,
        "aud": aud,
        "jti": str(uuid.uuid4()),
        "iat": int(now),
        "ref": ref,
        "digest": digest,
    }
    return jws.sign(claims, key, kid=kid, typ=TYP)


def verify_receipt(
    token: bytes | str,
    keys: KeySet,
    *,
    sender: str,
    receiver: str,
    ref: str,
    digest: str,
) -> Receipt:
    """Verify a receipt for the envelope ``ref`` whose compact bytes hash to ``digest``.

    Any fault is ``receipt_invalid`` from the sender's point of view; the detail says which.
    """
    try:
        parsed = jws.parse(token, typ=TYP, max_size=MAX_RECEIPT_BYTES)
        claims = parsed.claims
        c.require_exact(claims, CLAIMS, "receipt")
        iss = c.region(claims, "iss")
        iat = c.integer(claims, "iat")
        key = keys.resolve(parsed.kid, iss, iat)
        jws.check_signature(parsed, key.public_key)
    except ProtocolError as exc:
        raise ProtocolError(ErrorCode.RECEIPT_INVALID, f"{exc.code}: {exc.detail}") from exc
    if iss != receiver or claims["aud"] != sender:
        raise ProtocolError(ErrorCode.RECEIPT_INVALID, "receipt names the wrong parties")
    if claims["ref"] != ref or claims["digest"] != digest:
        raise ProtocolError(ErrorCode.RECEIPT_INVALID, "receipt is for another envelope")
    try:
        c.uuid_text(claims, "jti")
    except ProtocolError as exc:
        raise ProtocolError(ErrorCode.RECEIPT_INVALID, "receipt jti is not a UUID") from exc
    return Receipt(
        iss=iss,
        aud=claims["aud"],
        jti=claims["jti"],
        iat=iat,
        ref=claims["ref"],
        digest=claims["digest"],
        compact=parsed.compact,
    )
