"""Ed25519 keys, key ids and key sets with validity windows.

A ``kid`` is ``"<region>:<key-id>"`` where key-id is the first 16 hex digits of the SHA-256 of
the raw 32-byte public key, so anyone can check that a kid names the key it claims to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import ErrorCode, ProtocolError

REGION_RE = re.compile(r"^[1-9][0-9]{5}$")
KID_RE = re.compile(r"^([1-9][0-9]{5}):([0-9a-f]{16})$")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {c: i for i, c in enumerate(_B64URL_ALPHABET)}
_B64URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
#: The bits the last character of a text of length % 4 == key leaves unused (must be zero).
_UNUSED_BITS = {2: 0x0F, 3: 0x03}


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly (no padding, no other alphabet, canonical length,
    unused trailing bits zero), so that one byte string has exactly one text form.

    The alphabet is checked by binascii's strict mode on the standard alphabet, after the
    characters of the standard one that base64url lacks ('+', '/', '=') were refused; the
    canonical form by the last character's unused bits (the only freedom a decoder allows).
    2.5 times faster than matching a regex and encoding again (it runs on every envelope and
    receipt); tests/test_protocol.py compares it with that reference on every text of up to
    three characters over the alphabet and hostile ones."""
    remainder = len(text) % 4
    if remainder == 1:
        raise ProtocolError(ErrorCode.MALFORMED_JWS, "bad base64url")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED_JWS, "bad base64url") from exc
    if b"+" in raw or b"/" in raw or b"=" in raw:
        raise ProtocolError(ErrorCode.MALFORMED_JWS, "bad base64url")
    padded = raw.translate(_B64URL_TO_STANDARD) + b"=" * (-remainder % 4)
    try:
        data = binascii.a2b_base64(padded, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(ErrorCode.MALFORMED_JWS, "bad base64url") from exc
    if remainder and _B64URL_VALUE[text[-1]] & _UNUSED_BITS[remainder]:
        raise ProtocolError(ErrorCode.MALFORMED_JWS, "non-canonical base64url")
    return data


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """The public key as partners.toml writes it: base64url of the raw 32 bytes, no padding."""
    return b64url_encode(public_raw(key))


def load_public_key_text(text: str) -> Ed25519PublicKey:
    """Load a key written by ``public_key_text``; ValueError if it is not one."""
    try:
        raw = b64url_decode(text)
    except ProtocolError as exc:
        raise ValueError("public_key is unpadded base64url") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    y = int.from_bytes(raw, "little") & (2**255 - 1)
    if y >= _P:
        raise ValueError("an Ed25519 public key is encoded canonically (y < 2^255 - 19)")
    if y in _SMALL_ORDER_Y:
        # With such a key, R = that point and S = 0 "sign" every message (docs/protocol.md
        # §15); the signature check refuses them too, this says why at once.
        raise ValueError("an Ed25519 public key of small order signs nothing")
    return Ed25519PublicKey.from_public_bytes(raw)


_P = 2**255 - 19


def _small_order_y() -> frozenset[int]:
    """The y-coordinates of Ed25519's eight points of small order (RFC 8032's curve
    -x^2 + y^2 = 1 + d x^2 y^2 over GF(p)): y = 1 (the neutral point), y = -1 (order 2), y = 0
    (order 4), and the y of the four points of order 8, whose double has y = 0, that is
    x^2 = -y^2, so d y^4 + 2 y^2 - 1 = 0."""
    p = _P
    d = -121665 * pow(121666, -1, p) % p

    def sqrt(a: int) -> int | None:  # p = 5 (mod 8): Atkin's square root
        x = pow(a, (p + 3) // 8, p)
        if x * x % p != a % p:
            x = x * pow(2, (p - 1) // 4, p) % p
        return x if x * x % p == a % p else None

    ys = {0, 1, p - 1}
    root = sqrt(1 + d)
    assert root is not None
    for y2 in ((-1 + root) * pow(d, -1, p) % p, (-1 - root) * pow(d, -1, p) % p):
        y = sqrt(y2)
        if y is not None:
            ys |= {y, p - y}
    return frozenset(ys)


_SMALL_ORDER_Y = _small_order_y()


def key_id(region: str, key: Ed25519PublicKey) -> str:
    return f"{region}:{hashlib.sha256(public_raw(key)).hexdigest()[:16]}"


def region_of_kid(kid: str) -> str | None:
    match = KID_RE.match(kid)
    return match.group(1) if match else None


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("node.key must hold an Ed25519 private key")
    return key


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@dataclass(frozen=True)
class TrustedKey:
    """A public key we accept signatures from, for signatures made inside its window."""

    kid: str
    region: str
    public_key: Ed25519PublicKey = field(compare=False, repr=False)
    not_before: datetime
    not_after: datetime

    def valid_at(self, ts: float) -> bool:
        # Compared as numbers: a hostile iat far outside datetime's range must not raise.
        return self.not_before.timestamp() <= ts <= self.not_after.timestamp()

    def to_claim(self) -> dict[str, str]:
        """The form a node descriptor lists the key in."""
        return {
            "kid": self.kid,
            "public_key": public_key_text(self.public_key),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
        }

    @classmethod
    def from_claim(cls, region: str, claim: object) -> TrustedKey:
        if not isinstance(claim, dict) or set(claim) != {
            "kid",
            "public_key",
            "not_before",
            "not_after",
        }:
            raise ValueError("a key entry has kid, public_key, not_before, not_after")
        public = load_public_key_text(str(claim["public_key"]))
        kid = str(claim["kid"])
        if kid != key_id(region, public):
            raise ValueError(f"kid {kid} does not name its key")
        return cls(
            kid=kid,
            region=region,
            public_key=public,
            not_before=_parse_time(claim["not_before"]),
            not_after=_parse_time(claim["not_after"]),
        )


def _parse_time(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise ValueError("a time is an ISO 8601 string with offset")
    if moment.tzinfo is None:
        raise ValueError("a key's validity times need a UTC offset")
    return moment


class KeySet:
    """Keys by kid, and which regions we know at all. Holds loaded key objects (loading is
    slow enough to matter at thousands of verifications a second)."""

    def __init__(self, keys: list[TrustedKey] | None = None, regions: set[str] | None = None):
        self._keys: dict[str, TrustedKey] = {}
        self._regions: set[str] = set(regions or ())
        for key in keys or ():
            self.add(key)

    def add(self, key: TrustedKey) -> None:
        self._keys[key.kid] = key
        self._regions.add(key.region)

    def add_region(self, region: str) -> None:
        self._regions.add(region)

    def knows_region(self, region: str) -> bool:
        return region in self._regions

    def get(self, kid: str) -> TrustedKey | None:
        return self._keys.get(kid)

    def keys_of(self, region: str) -> list[TrustedKey]:
        return [k for k in self._keys.values() if k.region == region]

    def regions(self) -> set[str]:
        return set(self._regions)

    def resolve(self, kid: str, issuer: str, at: float) -> TrustedKey:
        """The key ``kid`` if ``issuer`` may sign with it at time ``at``; else ProtocolError."""
        if not self.knows_region(issuer):
            raise ProtocolError(ErrorCode.UNKNOWN_ISSUER, f"region {issuer} is not a partner")
        if region_of_kid(kid) != issuer:
            raise ProtocolError(ErrorCode.UNKNOWN_KID, "kid does not belong to the issuer")
        key = self._keys.get(kid)
        if key is None:
            raise ProtocolError(ErrorCode.UNKNOWN_KID, f"no trusted key {kid}")
        if not key.valid_at(at):
            raise ProtocolError(ErrorCode.KEY_NOT_VALID, f"key {kid} not valid at that time")
        return key
