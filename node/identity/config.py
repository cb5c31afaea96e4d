"""``[identity]`` in tongban.toml: which OpenID Connect provider vouches for citizens who apply
online (全程网办), and what to do when there is none (docs/identity.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: The only signature algorithms an ID token may use: asymmetric, with a key of the provider's
#: JWKS. ``none`` and the HMAC family (HS*) are never accepted, whatever the configuration.
SAFE_ALGORITHMS = ("RS256", "ES256", "EdDSA")
#: Where the client secret comes from when no ``client_secret_file`` is set.
SECRET_ENV = "TONGBAN_IDENTITY_CLIENT_SECRET"


class IdentityConfigError(ValueError):
    """``[identity]`` is wrong; the message says what to fix."""


@dataclass(frozen=True)
class IdentitySettings:
    """The provider (``issuer``) and this node's registration with it (``client_id``).

    Without an issuer no provider is configured: online applications are refused
    (``identity_required``) unless ``allow_unverified_online`` is set, in which case they are
    kept as unverified and staff check the applicant's identity before 受理."""

    issuer: str = ""
    #: The client id this node is registered under; the ``aud`` every ID token must name.
    client_id: str = ""
    #: Only for a confidential client: a file (0600, relative to the node directory) holding
    #: the secret, else the environment variable TONGBAN_IDENTITY_CLIENT_SECRET. Never in
    #: tongban.toml. Without one the node is a public client (PKCE only).
    client_secret_file: str | None = None
    #: The provider's keys: a URL (default: ``jwks_uri`` of its discovery document) or a file
    #: (relative to the node directory) for a provider whose keys are handed over offline.
    jwks_url: str = ""
    jwks_file: str | None = None
    #: Endpoints; by default from ``<issuer>/.well-known/openid-configuration``.
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    #: The claims that carry the citizen's name and 居民身份证号码.
    name_claim: str = "name"
    id_number_claim: str = "id_number"
    scope: str = "openid profile"
    #: A subset of SAFE_ALGORITHMS.
    algorithms: tuple[str, ...] = SAFE_ALGORITHMS
    #: Clock skew allowed on ``exp``, ``iat`` and ``nbf``, seconds.
    leeway: float = 60.0
    #: An ID token sent as ``Authorization: Bearer`` must be at most this old (``iat``),
    #: seconds: it carries no nonce of ours, so its age bounds a replay.
    bearer_max_age: float = 600.0
    #: How long a citizen stays signed in on the pages, minutes.
    session_minutes: int = 30
    #: With no provider (or none reachable), keep online applications as unverified instead
    #: of refusing them; the handling region's staff record an identity check (人证核验)
    #: before they can accept such a case.
    allow_unverified_online: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.issuer)

    def client_secret(self, base: Path) -> str | None:
        """The client secret, read when needed (never kept in the config object)."""
        if self.client_secret_file:
            path = Path(self.client_secret_file)
            path = path if path.is_absolute() else base / path
            return path.read_text(encoding="utf-8").strip() or None
        return os.environ.get(SECRET_ENV) or None

    def jwks_path(self, base: Path) -> Path | None:
        if not self.jwks_file:
            return None
        path = Path(self.jwks_file)
        return path if path.is_absolute() else base / path


_TEXT = (
    "issuer",
    "client_id",
    "client_secret_file",
    "jwks_url",
    "jwks_file",
    "authorization_endpoint",
    "token_endpoint",
    "name_claim",
    "id_number_claim",
    "scope",
)


def identity_settings(data: Any) -> IdentitySettings:
    """``[identity]`` checked: unknown keys, secrets, types and URLs refused with a message."""
    if not isinstance(data, dict):
        raise IdentityConfigError("[identity] must be a table")
    if "client_secret" in data:
        raise IdentityConfigError(
            "[identity] client_secret: secrets do not go into tongban.toml; use "
            f"client_secret_file (mode 0600) or {SECRET_ENV}"
        )
    unknown = set(data) - set(IdentitySettings.__dataclass_fields__)
    if unknown:
        raise IdentityConfigError(f"unknown [identity] settings: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key in _TEXT:
        if key in data:
            if not isinstance(data[key], str):
                raise IdentityConfigError(f"[identity] {key}: a string")
            values[key] = data[key].strip()
    issuer = values.get("issuer", "")
    if issuer:
        if not values.get("client_id"):
            raise IdentityConfigError("[identity] issuer needs client_id (this node's client id)")
        for key in ("issuer", "jwks_url", "authorization_endpoint", "token_endpoint"):
            if values.get(key) and urlsplit(values[key]).scheme not in ("https", "http"):
                raise IdentityConfigError(f"[identity] {key}: an http(s) URL")
        if values.get("jwks_url") and values.get("jwks_file"):
            raise IdentityConfigError("[identity] jwks_url and jwks_file: set one, not both")
    if "algorithms" in data:
        algorithms = data["algorithms"]
        if (
            not isinstance(algorithms, list)
            or not algorithms
            or any(a not in SAFE_ALGORITHMS for a in algorithms)
        ):
            raise IdentityConfigError(
                f"[identity] algorithms: a non-empty list of {', '.join(SAFE_ALGORITHMS)} "
                "(none and HS* are never accepted)"
            )
        values["algorithms"] = tuple(algorithms)
    for key, low, high in (
        ("leeway", 0, 300),
        ("bearer_max_age", 30, 3600),
        ("session_minutes", 5, 240),
    ):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise IdentityConfigError(f"[identity] {key}: a number from {low} to {high}")
            if not low <= value <= high:
                raise IdentityConfigError(f"[identity] {key}: a number from {low} to {high}")
            values[key] = int(value) if key == "session_minutes" else float(value)
    if "allow_unverified_online" in data:
        if not isinstance(data["allow_unverified_online"], bool):
            raise IdentityConfigError("[identity] allow_unverified_online: true or false")
        values["allow_unverified_online"] = data["allow_unverified_online"]
    return IdentitySettings(**values)
