"""Case-side glue of the video inspection (云端勘验 / 云见面).

The case knows nothing of WebRTC: it asks this module to open a session when an inspection is
scheduled (a row and a one-time join token), to record the evidence when the inspector signs
(through ``records.record``: state, hash-chained event, ``case.inspection_completed`` with the
files as blobs, in one transaction), and to verify a partner's evidence package before it is
shown (every digest, and the manifest's signature with the partner's trusted key).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from inspection import tokens
from inspection.manifest import EvidenceError, check_files, verify_manifest
from inspection.models import inspection_sessions
from node.cases import records
from node.cases.lifecycle import ACTIONS, Status, TransitionError, check
from node.cases.models import uploads
from node.federation.applier import BusinessRefusal
from node.http_errors import ApiError
from node.storage.blobs import BlobStore
from protocol.envelope import Envelope
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from node.cases.service import CaseService

KeyResolver = Callable[[str], Ed25519PublicKey | None]
#: Partner key lookup per running case service (bound by node.app at start).
_resolvers: dict[int, KeyResolver] = {}
#: How long after its start a join token stays valid when no duration is given.
DEFAULT_WINDOW_S = 4 * 3600


def bind_keys(service: CaseService, resolver: KeyResolver) -> None:
    _resolvers[id(service)] = resolver


def unbind_keys(service: CaseService) -> None:
    _resolvers.pop(id(service), None)


async def open_session(
    conn: AsyncConnection,
    row: Row[Any],
    *,
    session_id: str,
    kind: str,
    scheduled_at: float,
    duration_minutes: int | None,
    checklist: list[str],
    participants: list[dict[str, Any]],
    site_address: str | None,
    actor: str,
    now: float,
) -> str:
    """Store the session (cancelling earlier ones of the case) and return the applicant's
    one-time join token."""
    await conn.execute(
        update(inspection_sessions)
        .where(
            inspection_sessions.c.case_id == row.id,
            inspection_sessions.c.status == "scheduled",
        )
        .values(status="cancelled")
    )
    secret = tokens.new_secret()
    expires = max(scheduled_at, now) + (duration_minutes or 0) * 60 + DEFAULT_WINDOW_S
    await conn.execute(
        inspection_sessions.insert().values(
            id=session_id,
            case_id=row.id,
            xt_id=row.xt_id,
            case_no=row.case_no,
            kind=kind,
            status="scheduled",
            scheduled_at=scheduled_at,
            expires_at=expires,
            token_secret=secret,
            checklist=json.dumps(checklist, ensure_ascii=False),
            results="{}",
            participants=json.dumps(participants, ensure_ascii=False),
            site_address=site_address,
            created_by=actor,
            created_at=now,
        )
    )
    return tokens.issue(secret, session_id, role="applicant", now=now, expires_at=expires)


async def record_completion(
    service: CaseService,
    conn: AsyncConnection,
    case_id: int,
    *,
    actor: str,
    actor_name: str | None,
    role: str,
    body: dict[str, Any],
    blobs: list[dict[str, Any]],
    manifest_sha256: str,
) -> None:
    """Record the signed evidence on the case and send it to the other region."""
    row = await records.load_for_update(conn, case_id)
    if row is None:
        raise ApiError(404, "case_not_found", "案件不存在")
    try:
        check(
            ACTIONS["complete_inspection"],
            state=Status(row.status),
            role=role,
            sides=records.sides(row, service.region),
        )
    except TransitionError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    for blob in blobs:
        await remember(conn, blob, actor, service.clock())
    details = json.loads(row.details)
    details.setdefault("inspection", {})["evidence"] = body
    await records.record(
        conn,
        row,
        region=service.region,
        outbox=service.outbox,
        actor=actor,
        action="complete_inspection",
        changes={"details": json.dumps(details, ensure_ascii=False)},
        event={
            "session_id": body["session_id"],
            "result": body["result"],
            "manifest": manifest_sha256,
            "files": len(body["files"]),
        },
        envelope=records.Envelope("case.inspection_completed", body, blobs),
        now=service.clock(),
        actor_name=actor_name,
    )


async def verify_incoming(service: CaseService, env: Envelope) -> dict[str, Any]:
    """Check a partner's evidence package; BusinessRefusal with a stable code otherwise.
    Returns what the receiving node shows as verified."""
    body = env.body
    manifests = [f for f in body["files"] if f["kind"] == "manifest"]
    resolver = _resolvers.get(id(service))
    try:
        if resolver is None:
            raise EvidenceError("evidence_signature_invalid", "no partner keys to check with")
        stored = {
            f["blob"]: await _rehash(service.blobs, f["blob"])
            for f in body["files"]
            if f["kind"] != "manifest"
        }
        manifest_digest = manifests[0]["blob"]
        data = await service.blobs.read_bytes(manifest_digest)
        if hashlib.sha256(data).hexdigest() != manifest_digest:
            raise EvidenceError("evidence_digest_mismatch", "manifest file differs")
        manifest = verify_manifest(data, issuer=env.iss, keys=resolver)
        if any(v is None for v in stored.values()):
            raise EvidenceError("evidence_digest_mismatch", "a file does not match its digest")
        check_files(manifest, body["session_id"], body["files"], stored)  # type: ignore[arg-type]
    except EvidenceError as exc:
        raise BusinessRefusal(exc.code, exc.detail) from None
    except OSError:
        raise BusinessRefusal("evidence_digest_mismatch", "a file is missing") from None
    except ProtocolError:  # a "manifest" too large to be one
        raise BusinessRefusal("evidence_digest_mismatch", "manifest file too large") from None
    return {"manifest": manifest_digest, "verified_at": service.clock(), "manifest_body": manifest}


async def _rehash(blobs: BlobStore, digest: str) -> int | None:
    """The size of the stored file if its bytes hash to ``digest``, else None."""
    h = hashlib.sha256()
    size = 0
    async for chunk in blobs.read_chunks(digest):
        h.update(chunk)
        size += len(chunk)
    return size if h.hexdigest() == digest else None


async def remember(conn: AsyncConnection, blob: dict[str, Any], actor: str, now: float) -> None:
    """Make a blob downloadable by staff (``/api/v1/files/{sha256}``)."""
    exists = (
        await conn.execute(select(uploads.c.sha256).where(uploads.c.sha256 == blob["sha256"]))
    ).first()
    if exists is None:
        await conn.execute(
            uploads.insert().values(
                sha256=blob["sha256"],
                media_type=blob["media_type"],
                size=blob["size"],
                name=blob["name"],
                uploaded_at=now,
                uploaded_by=actor,
            )
        )
