"""The one table from case-domain error codes to HTTP statuses (the edge of node/cases)."""

from __future__ import annotations

from aiohttp import web

from node.cases.errors import CaseError, CaseErrorCode

C = CaseErrorCode

STATUS: dict[CaseErrorCode, int] = {
    C.INVALID_INPUT: 400,
    C.FORBIDDEN: 403,
    C.WRONG_SIDE: 403,
    C.NOT_A_PARTY: 403,
    C.CASE_NOT_FOUND: 404,
    C.UNKNOWN_CASE: 404,
    C.UNKNOWN_ACTION: 404,
    C.UNSUPPORTED_MESSAGE: 404,
    C.BUNDLE_NOT_FOUND: 404,
    C.RATING_NOT_FOUND: 404,
    C.FILE_NOT_FOUND: 404,
    C.TRANSITION_NOT_ALLOWED: 409,
    C.WITHDRAWAL_PENDING: 409,
    C.WITHDRAWAL_NOT_REQUESTED: 409,
    C.NOT_WITHDRAWABLE: 409,
    C.ALREADY_RECTIFIED: 409,
    C.ALREADY_RATED: 409,
    C.ITEM_UNAVAILABLE: 409,
    C.USE_INSPECTION_CONSOLE: 409,
    C.DEFERRED_OUTSTANDING: 409,
    C.NOTHING_DEFERRED: 409,
    C.NOT_DEFERRED: 409,
    C.DUPLICATE_CASE: 409,
    C.CASE_NO_NOT_YOURS: 409,
    C.EVIDENCE_SIGNATURE_INVALID: 409,
    C.EVIDENCE_DIGEST_MISMATCH: 409,
    C.EVIDENCE_MANIFEST_INVALID: 409,
    C.FILE_TOO_LARGE: 413,
    C.FILE_TYPE_NOT_ACCEPTED: 415,
    C.RATE_LIMITED: 429,
    C.IDENTITY_REQUIRED: 403,
    C.IDENTITY_MISMATCH: 403,
    C.IDENTITY_NOT_VERIFIED: 409,
    C.IDENTITY_ALREADY_VERIFIED: 409,
}


def case_error_response(exc: CaseError) -> web.Response:
    body: dict[str, object] = {"error": str(exc.code), "detail": exc.message}
    if exc.fields:
        body["fields"] = exc.fields
    return web.json_response(body, status=STATUS[exc.code])
