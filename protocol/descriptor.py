"""Node descriptors: a node's signed self-description and key list (docs/protocol.md).

A descriptor is signed by the oldest of the node's keys that is valid now, so that a key
rotation is announced under a key partners already trust. A partner takes new keys from a
descriptor only when its signature verifies under a key it already trusts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import claims as c
from protocol import jws
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import KeySet, TrustedKey

TYP = "tongban-node+jwt"
REQUIRED = frozenset({"region", "name", "url", "keys", "types"})
OPTIONAL = frozenset({"iat"})
MAX_DESCRIPTOR_BYTES = 64 * 1024


@dataclass(frozen=True)
class Descriptor:
    region: str
    name: str
    url: str
    keys: list[TrustedKey]
    types: list[str]
    signed_by: str


def sign_descriptor(
    *,
    region: str,
    name: str,
    url: str,
    keys: list[TrustedKey],
    types: list[str],
    now: float,
    signing_key: Ed25519PrivateKey,
    kid: str,
) -> str:
    claims = {
        "region": region,
        "name": name,
        "url": url,
        "keys": [k.to_claim() for k in keys],
        "types": list(types),
        "iat": int(now),
    }
    return jws.sign(claims, signing_key, kid=kid, typ=TYP)


def verify_descriptor(
    token: bytes | str, trusted: KeySet, *, region: str, now: float
) -> Descriptor:
    """Verify a descriptor of ``region`` under a key in ``trusted``; any fault is
    ``descriptor_invalid``."""
    try:
        parsed = jws.parse(token, typ=TYP, max_size=MAX_DESCRIPTOR_BYTES)
        claims = parsed.claims
        names = set(claims)
        if not names >= REQUIRED or names - REQUIRED - OPTIONAL:
            raise ProtocolError(ErrorCode.INVALID_CLAIMS, "descriptor claims")
        if c.region(claims, "region") != region:
            raise ProtocolError(ErrorCode.INVALID_CLAIMS, "descriptor of another region")
        key = trusted.resolve(parsed.kid, region, now)
        jws.check_signature(parsed, key.public_key)
        keys = _keys(region, claims["keys"])
    except ProtocolError as exc:
        raise ProtocolError(ErrorCode.DESCRIPTOR_INVALID, f"{exc.code}: {exc.detail}") from exc
    except ValueError as exc:
        raise ProtocolError(ErrorCode.DESCRIPTOR_INVALID, str(exc)) from exc
    types = claims["types"]
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ProtocolError(ErrorCode.DESCRIPTOR_INVALID, "types is a list of strings")
    if not isinstance(claims["name"], str) or not isinstance(claims["url"], str):
        raise ProtocolError(ErrorCode.DESCRIPTOR_INVALID, "name and url are strings")
    if "iat" in claims:
        try:
            c.integer(claims, "iat")
        except ProtocolError as exc:
            raise ProtocolError(ErrorCode.DESCRIPTOR_INVALID, "iat is an integer") from exc
    return Descriptor(
        region=region,
        name=claims["name"],
        url=claims["url"],
        keys=keys,
        types=types,
        signed_by=parsed.kid,
    )


def _keys(region: str, value: Any) -> list[TrustedKey]:
    if not isinstance(value, list) or not value or len(value) > 20:
        raise ValueError("keys is a list of 1..20 entries")
    return [TrustedKey.from_claim(region, entry) for entry in value]
