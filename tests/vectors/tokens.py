"""Hand-built compact JWS for the protocol tests and the vector generator.

Our own signer (``protocol.envelope.sign_envelope``) refuses to sign what a partner would
refuse, so every hostile input is built here byte by byte: any header, any payload bytes, an
Ed25519 signature over them, or a chosen signature.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import messages
from protocol.keys import TrustedKey, generate_private_key, key_id, public_raw, utc

DAY = 24 * 3600


def b64(data: bytes) -> str:
    """Unpadded base64url, as the wire uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value: Any, *, ascii_only: bool = False) -> bytes:
    """JSON without whitespace; raw UTF-8 unless ``ascii_only`` (then ``\\uXXXX`` escapes)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only).encode("utf-8")


def header(kid: str, typ: str, alg: str = "EdDSA") -> dict[str, Any]:
    return {"alg": alg, "typ": typ, "kid": kid}


def sign_raw(
    header_bytes: bytes,
    payload_bytes: bytes,
    key: Ed25519PrivateKey | None,
    *,
    signature: bytes | None = None,
) -> str:
    """``b64(header).b64(payload).b64(sig)``; sig is Ed25519 by ``key``, or ``signature``, or
    empty when both are None."""
    signing_input = f"{b64(header_bytes)}.{b64(payload_bytes)}"
    if signature is None:
        signature = key.sign(signing_input.encode("ascii")) if key is not None else b""
    return f"{signing_input}.{b64(signature)}"


def sign_json(head: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey | None) -> str:
    return sign_raw(compact_json(head), compact_json(claims), key)


def hs256_with_public_key(head: dict[str, Any], claims: dict[str, Any], public: bytes) -> str:
    """The key-confusion forgery: an HMAC-SHA256 keyed with the verifier's raw public key."""
    signing_input = f"{b64(compact_json(head))}.{b64(compact_json(claims))}"
    mac = hmac.new(public, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def flip_signature(token: str) -> str:
    """The same token with one bit of its signature flipped (still 64 bytes, canonical)."""
    head, payload, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[10] ^= 0x01
    return f"{head}.{payload}.{b64(bytes(raw))}"


def replace_payload(token: str, payload: bytes) -> str:
    """The same header and signature over other payload bytes."""
    head, _payload, signature = token.split(".")
    return f"{head}.{b64(payload)}.{signature}"


def payload_of(token: str) -> bytes:
    return unb64(token.split(".")[1])


def body_for(typ: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A body that validates for ``typ`` and the blobs it names.

    ``protocol.messages.example_body`` gives one per type once the schemas land; until then the
    provisional schema accepts an empty body.
    """
    example = getattr(messages, "example_body", None)
    if example is None:
        return {}, []
    body, blobs = example(typ)
    return copy.deepcopy(body), copy.deepcopy(list(blobs))


@dataclass(frozen=True)
class Signer:
    """A region's key pair with its validity window, as a partner's key set lists it."""

    region: str
    private_key: Ed25519PrivateKey
    trusted: TrustedKey

    @property
    def kid(self) -> str:
        return self.trusted.kid

    @property
    def public(self) -> bytes:
        return public_raw(self.trusted.public_key)

    @classmethod
    def make(cls, region: str, not_before: float, not_after: float) -> Signer:
        private = generate_private_key()
        public = private.public_key()
        trusted = TrustedKey(
            kid=key_id(region, public),
            region=region,
            public_key=public,
            not_before=utc(not_before),
            not_after=utc(not_after),
        )
        return cls(region=region, private_key=private, trusted=trusted)


def iso(moment: datetime | float) -> str:
    value = moment if isinstance(moment, datetime) else utc(moment)
    return value.isoformat()


def days(n: float) -> int:
    return int(timedelta(days=n).total_seconds())


# -- run-length form of very long tokens -------------------------------------------------------

_RUN = re.compile(r"(.{4})\1{255,}", re.DOTALL)


def to_runs(token: str) -> list[list[str | int]]:
    """``token`` as ``[[segment, count], ...]``: long repeats of a 4-character unit collapsed.

    The vector files hold a 1 MiB token and a 100 000-level nesting this way; the token is the
    concatenation of each segment repeated ``count`` times.
    """
    runs: list[list[str | int]] = []
    position = 0
    for match in _RUN.finditer(token):
        if match.start() > position:
            runs.append([token[position : match.start()], 1])
        unit = match.group(1)
        runs.append([unit, (match.end() - match.start()) // 4])
        position = match.end()
    if position < len(token):
        runs.append([token[position:], 1])
    return runs


def from_runs(runs: list[list[Any]]) -> str:
    return "".join(str(segment) * int(count) for segment, count in runs)
