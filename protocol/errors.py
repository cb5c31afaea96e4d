"""Stable error codes of the wire contract.

Every refusal a node sends is JSON ``{"error": "<code>", "detail": "..."}`` with the HTTP
status listed here. Codes never change meaning; new ones may be added. docs/protocol.md lists
them for partner engineers.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # Transport and framing
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    MALFORMED_JWS = "malformed_jws"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    JSON_TOO_DEEP = "json_too_deep"
    BAD_PATH = "bad_path"
    NOT_FOUND = "not_found"
    # Header and signature
    INVALID_HEADER = "invalid_header"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_ISSUER = "unknown_issuer"
    UNKNOWN_KID = "unknown_kid"
    KEY_NOT_VALID = "key_not_valid"
    BAD_SIGNATURE = "bad_signature"
    # Claims
    INVALID_CLAIMS = "invalid_claims"
    WRONG_AUDIENCE = "wrong_audience"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    SCHEMA_INVALID = "schema_invalid"
    JTI_REUSED = "jti_reused"
    # Blobs
    BLOBS_MISSING = "blobs_missing"
    BLOB_DIGEST_MISMATCH = "blob_digest_mismatch"
    BLOB_TOO_LARGE = "blob_too_large"
    TOKEN_MISSING = "token_missing"
    TOKEN_INVALID = "token_invalid"
    # Receipts and descriptors seen by a sender
    RECEIPT_INVALID = "receipt_invalid"
    DESCRIPTOR_INVALID = "descriptor_invalid"
    # The partner directory seen by a node that follows it (docs/protocol.md, §12.1)
    DIRECTORY_UNKNOWN_KEY = "directory_unknown_key"
    DIRECTORY_INVALID_CLAIMS = "directory_invalid_claims"
    DIRECTORY_NOT_YET_VALID = "directory_not_yet_valid"
    DIRECTORY_STALE = "directory_stale"
    DIRECTORY_REPLAYED = "directory_replayed"
    DIRECTORY_INVALID_ENTRY = "directory_invalid_entry"
    DIRECTORY_DUPLICATE_REGION = "directory_duplicate_region"
    DIRECTORY_BAD_KEY = "directory_bad_key"
    DIRECTORY_BAD_URL = "directory_bad_url"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.MALFORMED_JWS: 400,
    ErrorCode.INVALID_ENCODING: 400,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.JSON_TOO_DEEP: 400,
    ErrorCode.BAD_PATH: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_HEADER: 400,
    ErrorCode.ALG_NOT_ALLOWED: 401,
    ErrorCode.WRONG_TYPE: 400,
    ErrorCode.UNKNOWN_ISSUER: 401,
    ErrorCode.UNKNOWN_KID: 401,
    ErrorCode.KEY_NOT_VALID: 401,
    ErrorCode.BAD_SIGNATURE: 401,
    ErrorCode.INVALID_CLAIMS: 400,
    ErrorCode.WRONG_AUDIENCE: 403,
    ErrorCode.EXPIRED: 401,
    ErrorCode.NOT_YET_VALID: 401,
    ErrorCode.LIFETIME_TOO_LONG: 400,
    ErrorCode.UNKNOWN_MESSAGE_TYPE: 400,
    ErrorCode.SCHEMA_INVALID: 422,
    ErrorCode.JTI_REUSED: 422,
    ErrorCode.BLOBS_MISSING: 409,
    ErrorCode.BLOB_DIGEST_MISMATCH: 422,
    ErrorCode.BLOB_TOO_LARGE: 413,
    ErrorCode.TOKEN_MISSING: 401,
    ErrorCode.TOKEN_INVALID: 401,
    ErrorCode.RECEIPT_INVALID: 502,
    ErrorCode.DESCRIPTOR_INVALID: 502,
    # Never sent on the wire: a node reports them in doctor, /metrics and its logs.
    ErrorCode.DIRECTORY_UNKNOWN_KEY: 502,
    ErrorCode.DIRECTORY_INVALID_CLAIMS: 502,
    ErrorCode.DIRECTORY_NOT_YET_VALID: 502,
    ErrorCode.DIRECTORY_STALE: 502,
    ErrorCode.DIRECTORY_REPLAYED: 502,
    ErrorCode.DIRECTORY_INVALID_ENTRY: 502,
    ErrorCode.DIRECTORY_DUPLICATE_REGION: 502,
    ErrorCode.DIRECTORY_BAD_KEY: 502,
    ErrorCode.DIRECTORY_BAD_URL: 502,
}


class ProtocolError(Exception):
    """A refusal with a stable code. ``detail`` is for people and never holds personal data."""

    def __init__(self, code: ErrorCode, detail: str = "", **extra: object) -> None:
        super().__init__(f"{code}: {detail}" if detail else str(code))
        self.code = code
        self.detail = detail
        self.extra = extra

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": str(self.code), "detail": self.detail}
        body.update(self.extra)
        return body
