"""One-time join tokens for the applicant's link (PyJWT, HS256 with a per-session secret).

A token names its session (``sid``) and expires; its ``jti`` is recorded when it is used, so a
second use is refused. Because each session has its own secret, a token of another session can
never verify here; its ``sid`` claim is still read (unverified) to give the clearer error.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from inspection.errors import InspectionError

AUDIENCE = "tongban-inspection-join"
ALGORITHM = "HS256"
MAX_TOKEN_CHARS = 512


def new_secret() -> str:
    return secrets.token_hex(32)


def issue(secret: str, session_id: str, *, role: str, now: float, expires_at: float) -> str:
    claims = {
        "aud": AUDIENCE,
        "sid": session_id,
        "role": role,
        "jti": uuid.uuid4().hex,
        "iat": int(now),
        "exp": int(expires_at),
    }
    return jwt.encode(claims, bytes.fromhex(secret), algorithm=ALGORITHM)


@dataclass(frozen=True)
class JoinClaims:
    session_id: str
    role: str
    jti: str
    expires_at: int


def unverified_session(token: str) -> str | None:
    """The ``sid`` a token claims, without checking it (to pick the secret, or to say that a
    token belongs elsewhere)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    sid = claims.get("sid")
    return sid if isinstance(sid, str) else None


def verify(token: str, secret: str, session_id: str, *, now: float) -> JoinClaims:
    """The claims of a valid token for ``session_id``; InspectionError otherwise (use is
    checked by the caller against the used-token table)."""
    if not token:
        raise InspectionError("token_missing")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise InspectionError("token_malformed")
    claimed = unverified_session(token)
    if claimed is None:
        raise InspectionError("token_malformed")
    if claimed != session_id:
        raise InspectionError("token_wrong_session")
    try:
        claims = jwt.decode(
            token,
            bytes.fromhex(secret),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "iat", "jti", "sid", "aud"]},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise InspectionError("token_expired") from None
    except jwt.PyJWTError:
        raise InspectionError("token_invalid") from None
    if claims["exp"] <= now:
        raise InspectionError("token_expired")
    return JoinClaims(
        session_id=claims["sid"],
        role=str(claims.get("role", "applicant")),
        jti=str(claims["jti"]),
        expires_at=int(claims["exp"]),
    )
