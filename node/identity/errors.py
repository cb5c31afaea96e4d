"""Why a citizen's identity was not accepted: one stable code per reason (docs/identity.md)."""

from __future__ import annotations

from enum import StrEnum


class IdentityErrorCode(StrEnum):
    #: Not a JWS at all, or its header or payload does not parse.
    TOKEN_MALFORMED = "identity_token_malformed"
    #: ``alg`` is not one we accept (``none``, HS*, anything not configured), or does not
    #: fit the key the ``kid`` names.
    TOKEN_ALGORITHM = "identity_token_algorithm"
    #: No key of the provider's JWKS has this ``kid`` (after one refresh).
    TOKEN_KEY_UNKNOWN = "identity_token_key_unknown"
    TOKEN_SIGNATURE = "identity_token_signature"
    TOKEN_ISSUER = "identity_token_issuer"
    TOKEN_AUDIENCE = "identity_token_audience"
    TOKEN_EXPIRED = "identity_token_expired"
    #: ``iat`` or ``nbf`` in the future (beyond the leeway), or a bearer token too old.
    TOKEN_NOT_YET_VALID = "identity_token_not_yet_valid"
    TOKEN_TOO_OLD = "identity_token_too_old"
    TOKEN_NONCE = "identity_token_nonce"
    #: A required claim (sub, name, ID number) is missing or not well-formed.
    TOKEN_CLAIMS = "identity_token_claims"
    #: The application names someone else than the verified citizen.
    MISMATCH = "identity_mismatch"
    #: The login's state does not match, has expired, or the provider refused the login.
    LOGIN_FAILED = "identity_login_failed"
    #: The provider (discovery, keys, token endpoint) did not answer properly.
    PROVIDER_UNAVAILABLE = "identity_provider_unavailable"


#: HTTP status of each code at the API edge.
STATUS: dict[IdentityErrorCode, int] = {
    **{code: 401 for code in IdentityErrorCode},
    IdentityErrorCode.MISMATCH: 403,
    IdentityErrorCode.LOGIN_FAILED: 400,
    IdentityErrorCode.PROVIDER_UNAVAILABLE: 503,
}


#: What a person reads when a token is refused and no more specific message applies.
REFUSED = "身份认证未通过，请重新登录"


class IdentityError(Exception):
    """A refused identity: ``code`` for programs, ``message`` in Chinese for people."""

    def __init__(self, code: IdentityErrorCode, message: str = REFUSED) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.code]
