"""Checks on the registered claims shared by envelopes, receipts and request tokens."""

from __future__ import annotations

import re
import uuid
from typing import Any

from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import REGION_RE

#: Clock skew tolerated between nodes, in seconds (docs/protocol.md).
CLOCK_SKEW = 300
#: Longest lifetime ``exp - iat`` of an envelope or token, in seconds (docs/protocol.md).
MAX_LIFETIME = 7 * 24 * 3600
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
#: Largest integer claim: 2**53 - 1, the largest every JSON implementation reads exactly.
MAX_INTEGER = 2**53 - 1


def require_exact(claims: dict[str, Any], names: frozenset[str], what: str) -> None:
    missing = sorted(names - claims.keys())
    extra = sorted(claims.keys() - names)
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("unknown " + ", ".join(extra))
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, f"{what}: " + "; ".join(parts))


def region(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not REGION_RE.match(value):
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, f"{name} is a 6-digit region code string")
    return value


def integer(claims: dict[str, Any], name: str, *, minimum: int = 0) -> int:
    value = claims.get(name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or value > MAX_INTEGER
    ):
        raise ProtocolError(
            ErrorCode.INVALID_CLAIMS, f"{name} is an integer {minimum}..{MAX_INTEGER}"
        )
    return value


def uuid_text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, f"{name} is a UUID string")
    try:
        parsed = uuid.UUID(value)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, f"{name} is a UUID string") from exc
    if str(parsed) != value:
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, f"{name} is a lowercase canonical UUID")
    return value


def sha256_hex(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not SHA256_RE.match(value):
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, f"{name} is 64 lowercase hex digits")
    return value


def lifetime(iat: int, exp: int, now: float, *, skew: int = CLOCK_SKEW) -> None:
    """``iat`` not in the future beyond skew, ``exp`` not past beyond skew, lifetime bounded."""
    if exp <= iat:
        raise ProtocolError(ErrorCode.INVALID_CLAIMS, "exp must be after iat")
    if exp - iat > MAX_LIFETIME:
        raise ProtocolError(ErrorCode.LIFETIME_TOO_LONG, "exp - iat is at most 7 days")
    if iat > now + skew:
        raise ProtocolError(ErrorCode.NOT_YET_VALID, "iat is in the future")
    if exp < now - skew:
        raise ProtocolError(ErrorCode.EXPIRED, "expired")
