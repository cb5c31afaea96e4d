"""The case domain's refusals: one exception family, codes from one enum.

The domain knows nothing of HTTP. The staff and citizen API map a code to a status in one table
(``node/api/errors.py``); the federation applier answers a partner's refused message with
``case.error`` carrying the same code. docs/cases.md lists every code.
"""

from __future__ import annotations

from enum import StrEnum


class CaseErrorCode(StrEnum):
    # -- input --------------------------------------------------------------------------
    INVALID_INPUT = "invalid_input"  # field errors, all at once in ``fields``
    # -- who and where ------------------------------------------------------------------
    FORBIDDEN = "forbidden"  # the role may not perform the action
    WRONG_SIDE = "wrong_side"  # the action belongs to the other region of the case
    NOT_A_PARTY = "not_a_party"  # the sender is not a region of the case
    # -- what ---------------------------------------------------------------------------
    CASE_NOT_FOUND = "case_not_found"
    UNKNOWN_CASE = "unknown_case"  # a partner names a case (xt) we do not hold
    UNKNOWN_ACTION = "unknown_action"
    UNSUPPORTED_MESSAGE = "unsupported_message"
    BUNDLE_NOT_FOUND = "bundle_not_found"
    RATING_NOT_FOUND = "rating_not_found"
    FILE_NOT_FOUND = "file_not_found"
    # -- state --------------------------------------------------------------------------
    TRANSITION_NOT_ALLOWED = "transition_not_allowed"
    WITHDRAWAL_PENDING = "withdrawal_pending"
    WITHDRAWAL_NOT_REQUESTED = "withdrawal_not_requested"
    NOT_WITHDRAWABLE = "not_withdrawable"
    ALREADY_RECTIFIED = "already_rectified"
    ALREADY_RATED = "already_rated"
    ITEM_UNAVAILABLE = "item_unavailable"
    USE_INSPECTION_CONSOLE = "use_inspection_console"
    DEFERRED_OUTSTANDING = "deferred_outstanding"
    NOTHING_DEFERRED = "nothing_deferred"
    NOT_DEFERRED = "not_deferred"
    # -- a partner's case.submit ---------------------------------------------------------
    DUPLICATE_CASE = "duplicate_case"
    CASE_NO_NOT_YOURS = "case_no_not_yours"
    # -- a partner's evidence package ------------------------------------------------------
    EVIDENCE_SIGNATURE_INVALID = "evidence_signature_invalid"
    EVIDENCE_DIGEST_MISMATCH = "evidence_digest_mismatch"
    EVIDENCE_MANIFEST_INVALID = "evidence_manifest_invalid"
    # -- files ----------------------------------------------------------------------------
    FILE_TOO_LARGE = "file_too_large"
    FILE_TYPE_NOT_ACCEPTED = "file_type_not_accepted"
    # -- citizens -------------------------------------------------------------------------
    RATE_LIMITED = "rate_limited"
    IDENTITY_REQUIRED = "identity_required"  # online: no verified identity, none allowed
    IDENTITY_MISMATCH = "identity_mismatch"  # online: the body names someone else
    IDENTITY_NOT_VERIFIED = "identity_not_verified"  # accept before the 人证核验 is recorded
    IDENTITY_ALREADY_VERIFIED = "identity_already_verified"


class CaseError(Exception):
    """A refusal: ``code`` for programs, ``message`` in Chinese for people, ``fields`` (each
    ``{"field", "code", "message"}``, field a dotted path) for input errors, ``detail`` in
    English for a partner's engineer (sent in ``case.error``)."""

    def __init__(
        self,
        code: CaseErrorCode,
        message: str,
        *,
        fields: list[dict[str, str]] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail or message}")
        self.code = code
        self.message = message
        self.fields = fields or []
        self.detail = detail or message


def field_error(field: str, code: str, message: str) -> dict[str, str]:
    return {"field": field, "code": code, "message": message}
