"""What the case domain needs from parts it does not know: the video inspection and the
federation's trust store. Each is a small Protocol that node/app.py fills in; node/cases
imports none of those parts (tests/test_import_graph.py keeps it so)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncConnection

#: The trusted public key of a partner's ``kid`` (None when unknown), for evidence manifests.
PartnerKeys = Callable[[str], Ed25519PublicKey | None]


@dataclass(frozen=True)
class SessionPlan:
    """A video session to open for a case (云端勘验 or 云见面)."""

    case_id: int
    xt_id: str
    case_no: str
    session_id: str
    kind: str  # inspection | meeting
    scheduled_at: float
    duration_minutes: int | None
    checklist: list[str]
    participants: list[dict[str, Any]]
    site_address: str | None
    created_by: str


class InspectionScheduler(Protocol):
    async def display_names(self, conn: AsyncConnection, usernames: list[str]) -> dict[str, str]:
        """The display names of this node's staff ``usernames`` (those it knows), so that the
        session, the record and the partner name people as they are called, not by login."""

    async def open_session(self, conn: AsyncConnection, plan: SessionPlan, *, now: float) -> str:
        """Store the session in the caller's transaction (cancelling the case's earlier
        scheduled ones) and return the applicant's one-time join token."""


@dataclass(frozen=True)
class InspectionEvidence:
    """The signed evidence of a finished session, handed to ``complete_inspection`` by the
    inspection console. A JSON payload can never be one: staff cannot forge evidence through
    the actions API."""

    body: dict[str, Any]  # the case.inspection_completed body
    blobs: list[dict[str, Any]]  # every file, as envelope blob references
    manifest_sha256: str
    #: ``inspection`` (a 勘验笔录, signed by an inspector) or ``meeting`` (云见面, which an
    #: approver taking part may end too).
    kind: str = "inspection"
