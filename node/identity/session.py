"""The citizen's short-lived session on the pages and the state of a login in progress, both
kept in cookies sealed with the node's data keys (AES-256-GCM, node/storage/sealing.py): the
browser holds them but can neither read the ID number inside nor change anything.

- ``tongban_login_state_<region>`` (path ``/citizen/callback``, 10 minutes): state, nonce, PKCE
  verifier and where to go after the login; used once.
- ``tongban_citizen_<region>`` (``__Host-tongban_citizen_<region>`` over https; path ``/``,
  ``[identity] session_minutes``): the verified name and ID number, the expiry, and the CSRF
  token of the citizen's forms.

Both are HttpOnly, SameSite=Lax (the provider's redirect back is a top-level navigation from
another site, which Strict would strip) and Secure when the node's URL is https. A value that
is not sealed by us (no ``enc1:`` prefix), does not open, or has expired counts as absent.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from node.storage.sealing import PREFIX, SealingError, SealsValues

LOGIN_PLACE = "identity.login_state"
SESSION_PLACE = "identity.citizen_session"
#: How long a login may take at the provider, seconds.
LOGIN_LIFETIME = 600
CALLBACK_PATH = "/citizen/callback"


def login_cookie_name(region: str) -> str:
    return f"tongban_login_state_{region}"


def session_cookie_name(region: str, *, secure: bool = False) -> str:
    """Over https a ``__Host-`` cookie, which a sibling subdomain cannot set or overwrite (so
    nobody can plant their own session in a citizen's browser)."""
    name = f"tongban_citizen_{region}"
    return f"__Host-{name}" if secure else name


@dataclass(frozen=True)
class LoginState:
    state: str
    nonce: str
    verifier: str
    next: str
    expires: float


@dataclass(frozen=True)
class CitizenSession:
    name: str
    id_number: str
    issuer: str
    subject: str
    expires: float
    #: The CSRF token of this session's forms.
    csrf: str
    #: The session's id: a logout records it, which ends every copy of the cookie
    #: (node/identity/session_ends.py). A cookie sealed before sessions had one counts as none.
    sid: str

    def csrf_ok(self, offered: Any) -> bool:
        return isinstance(offered, str) and hmac.compare_digest(offered, self.csrf)

    @property
    def verified(self) -> bool:
        """Whether an identity provider vouched for this citizen. An unverified session (no
        provider, ``allow_unverified_online``) only ties the phone's form to its CSRF token."""
        return bool(self.issuer and self.id_number)


def new_session(
    *, name: str, id_number: str, issuer: str, subject: str, expires: float
) -> CitizenSession:
    """A session starting now: a fresh CSRF token and a fresh session id."""
    return CitizenSession(
        name=name,
        id_number=id_number,
        issuer=issuer,
        subject=subject,
        expires=expires,
        csrf=secrets.token_urlsafe(24),
        sid=secrets.token_urlsafe(16),
    )


def unverified_session(now: float, lifetime: int) -> CitizenSession:
    return new_session(name="", id_number="", issuer="", subject="", expires=now + lifetime)


def seal(sealer: SealsValues, data: dict[str, Any], place: str) -> str:
    return sealer.seal(json.dumps(data, ensure_ascii=False, separators=(",", ":")), place)


def unseal(sealer: SealsValues, value: str | None, place: str) -> dict[str, Any] | None:
    """The data of a cookie we sealed for ``place``, or None (absent, foreign, tampered)."""
    if not value or not value.startswith(PREFIX) or len(value) > 4096:
        return None
    try:
        data = json.loads(sealer.open(value, place))
    except (SealingError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _set(
    response: web.StreamResponse, name: str, value: str, *, path: str, max_age: int, secure: bool
) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="Lax", secure=secure, path=path, max_age=max_age
    )


def new_login(next_path: str, now: float) -> LoginState:
    return LoginState(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(48),
        next=next_path,
        expires=now + LOGIN_LIFETIME,
    )


def set_login(
    response: web.StreamResponse,
    sealer: SealsValues,
    region: str,
    login: LoginState,
    *,
    secure: bool,
) -> None:
    _set(
        response,
        login_cookie_name(region),
        seal(sealer, asdict(login), LOGIN_PLACE),
        path=CALLBACK_PATH,
        max_age=LOGIN_LIFETIME,
        secure=secure,
    )


def read_login(
    request: web.Request, sealer: SealsValues, region: str, now: float
) -> LoginState | None:
    data = unseal(sealer, request.cookies.get(login_cookie_name(region)), LOGIN_PLACE)
    try:
        login = LoginState(**data) if data is not None else None
    except TypeError:
        return None
    return login if login is not None and login.expires > now else None


def clear_login(response: web.StreamResponse, region: str) -> None:
    response.del_cookie(login_cookie_name(region), path=CALLBACK_PATH)


def set_session(
    response: web.StreamResponse,
    sealer: SealsValues,
    region: str,
    session: CitizenSession,
    *,
    lifetime: int,
    secure: bool,
) -> None:
    _set(
        response,
        session_cookie_name(region, secure=secure),
        seal(sealer, asdict(session), SESSION_PLACE),
        path="/",
        max_age=lifetime,
        secure=secure,
    )


def read_session(
    request: web.Request, sealer: SealsValues, region: str, now: float, *, secure: bool
) -> CitizenSession | None:
    name = session_cookie_name(region, secure=secure)
    data = unseal(sealer, request.cookies.get(name), SESSION_PLACE)
    try:
        session = CitizenSession(**data) if data is not None else None
    except TypeError:
        return None
    return session if session is not None and session.expires > now else None


def clear_session(response: web.StreamResponse, region: str, *, secure: bool) -> None:
    response.del_cookie(session_cookie_name(region, secure=secure), path="/", secure=secure)
