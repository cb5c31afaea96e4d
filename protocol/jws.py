"""Compact JWS (RFC 7515) with EdDSA only: the one framing every signed object uses.

Signing makes exactly the bytes PyJWT's ``jwt.encode`` makes (tests/test_protocol.py compares
them), without its per-call work (header checks, algorithm and key lookups): it signs every
receipt and envelope. Verification parses strictly here first (size, alphabet, UTF-8, JSON,
header), so that every malformed input gets its own stable error code, and then checks the
Ed25519 signature over the bytes exactly as received.

Keys are cryptography's objects everywhere; the one signature check runs in libsodium (PyNaCl),
which verifies in about 55 % of OpenSSL's time here (bench/README.md) and refuses what RFC 8032
allows only to forgers: non-canonical encodings and keys or commitments of small order.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import b64url_decode, b64url_encode, public_raw
from protocol.strictjson import loads_object

ALGORITHM = "EdDSA"
HEADER_FIELDS = frozenset({"alg", "typ", "kid"})


@dataclass(frozen=True)
class ParsedJWS:
    """A compact JWS split and decoded, signature not yet checked."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    compact: bytes

    @property
    def kid(self) -> str:
        return str(self.header["kid"])

    @property
    def digest(self) -> str:
        """SHA-256 hex of the compact bytes as received (what a receipt's ``digest`` names)."""
        return hashlib.sha256(self.compact).hexdigest()


def sign(claims: dict[str, Any], key: Ed25519PrivateKey, *, kid: str, typ: str) -> str:
    """Sign ``claims`` as a compact JWS with header ``{"alg": "EdDSA", "typ", "kid"}``: the
    header's keys sorted, both parts compact JSON with non-ASCII as ``\\u`` escapes, as PyJWT
    writes them."""
    payload = b64url_encode(json.dumps(claims, separators=(",", ":")).encode("ascii"))
    signing_input = f"{_header_segment(kid, typ)}.{payload}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode('ascii')))}"


@functools.lru_cache(maxsize=256)
def _header_segment(kid: str, typ: str) -> str:
    header = {"alg": ALGORITHM, "kid": kid, "typ": typ}
    return b64url_encode(json.dumps(header, separators=(",", ":"), sort_keys=True).encode("ascii"))


def parse(token: bytes | str, *, typ: str, max_size: int) -> ParsedJWS:
    """Split and decode ``token`` strictly. Raises ProtocolError with the first fault found."""
    compact = token.encode("utf-8", "surrogateescape") if isinstance(token, str) else token
    if len(compact) > max_size:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"over {max_size} bytes")
    if not compact.isascii():
        raise ProtocolError(ErrorCode.MALFORMED_JWS, "a compact JWS is ASCII")
    parts = compact.split(b".")
    if len(parts) != 3 or not all(parts[:2]):
        raise ProtocolError(ErrorCode.MALFORMED_JWS, "a compact JWS has three parts")
    header_b64, claims_b64, signature_b64 = (p.decode("ascii") for p in parts)
    header = loads_object(b64url_decode(header_b64))
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise ProtocolError(ErrorCode.ALG_NOT_ALLOWED, f"only {ALGORITHM} is accepted")
    if set(header) != HEADER_FIELDS or not isinstance(header["kid"], str):
        raise ProtocolError(ErrorCode.INVALID_HEADER, "the header has exactly alg, typ, kid")
    if header["typ"] != typ:
        raise ProtocolError(ErrorCode.WRONG_TYPE, f"expected typ {typ}")
    claims = loads_object(b64url_decode(claims_b64))
    signature = b64url_decode(signature_b64)
    if len(signature) != 64:
        raise ProtocolError(ErrorCode.BAD_SIGNATURE, "an Ed25519 signature is 64 bytes")
    return ParsedJWS(
        header=header,
        claims=claims,
        signing_input=b".".join(parts[:2]),
        signature=signature,
        compact=compact,
    )


def check_signature(parsed: ParsedJWS, key: Ed25519PublicKey) -> None:
    """The Ed25519 signature of ``parsed`` over its signing input, by ``key``; else
    ``bad_signature``. (``parse`` has checked the signature's length.)"""
    try:
        crypto_sign_open(parsed.signature + parsed.signing_input, public_raw(key))
    except BadSignatureError as exc:
        raise ProtocolError(ErrorCode.BAD_SIGNATURE, "signature does not verify") from exc
