"""What every action handler shares: the node's collaborators (``CaseDeps``) and the one case
being changed inside one transaction (``Step``), whose ``write`` is the only way a handler
records a change (``records.record``: state, hash-chained event, outgoing envelope)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from node.cases import records, validation
from node.cases.actor import Actor
from node.cases.deadlines import DEFAULT_WARNING_DAYS, Calendar, compute
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.lifecycle import Action
from node.cases.models import uploads
from node.cases.ports import InspectionScheduler, PartnerKeys
from node.clock import china_iso, today_in_china
from node.federation.outbox import Outbox
from node.storage import filetypes
from node.storage.blobs import BlobStore
from node.storage.database import Database
from node.storage.sealing import SealsValues
from protocol.envelope import Envelope

ItemLookup = Callable[[str], Awaitable[Any]]
CalendarSource = Callable[[], Awaitable[Calendar]]


class CaseDeps(Protocol):
    """The node's collaborators an action needs (node.cases.service.CaseService has them)."""

    db: Database
    region: str
    base_url: str
    outbox: Outbox
    blobs: BlobStore
    rectification_days: int
    deferred_days: int
    window_name: str
    allow_unverified_online: bool
    inspections: InspectionScheduler | None
    sealer: SealsValues

    @property
    def items(self) -> ItemLookup: ...

    @property
    def calendar(self) -> CalendarSource: ...

    @property
    def partner_keys(self) -> PartnerKeys: ...

    @property
    def clock(self) -> Callable[[], float]: ...


@dataclass
class Step:
    """One action on one case, inside the caller's transaction, after the front's check."""

    deps: CaseDeps
    conn: AsyncConnection
    row: Row[Any]
    actor: Actor
    action: Action
    #: The partner's message, when a partner performs the action.
    envelope: Envelope | None = None
    #: What the handler hands back to the caller beside the case (``reveal``).
    result: dict[str, Any] | None = None

    # -- time ------------------------------------------------------------------------------

    def now(self) -> float:
        return self.deps.clock()

    def today(self) -> date:
        return today_in_china(self.deps.clock())

    def now_iso(self) -> str:
        return china_iso(self.deps.clock())

    # -- reading ---------------------------------------------------------------------------

    @property
    def details(self) -> dict[str, Any]:
        """A fresh copy of the case's ``details`` to change and write back."""
        value: dict[str, Any] = json.loads(self.row.details)
        return value

    async def item(self) -> Any:
        item = await self.deps.items(self.row.item_code)
        if item is None:
            raise CaseError(CaseErrorCode.ITEM_UNAVAILABLE, "事项已停用，请联系管理员")
        return item

    async def upload(self, sha256: Any) -> Row[Any] | None:
        """The stored upload of ``sha256`` if it is a digest we hold a file for."""
        if not isinstance(sha256, str) or not validation.SHA256_RE.match(sha256):
            return None
        row = await records.upload(self.conn, sha256)
        if row is None or not await self.deps.blobs.has(sha256):
            return None
        return row

    async def blob_refs(self, digests: list[str]) -> list[dict[str, Any]]:
        """Envelope blob references of uploads (type, size and name as we stored them)."""
        return await records.blob_refs(self.conn, digests)

    # -- writing ---------------------------------------------------------------------------

    async def write(
        self,
        action: str | None = None,
        *,
        to_status: Any = None,
        changes: dict[str, Any] | None = None,
        event: dict[str, Any] | None = None,
        envelope: records.Envelope | None = None,
        files: list[str] | None = None,
    ) -> None:
        """Record the change (``records.record``); a partner's message is named in the event
        by its ``jti`` (the audit link to the stored envelope). ``files``: the uploads the
        change uses, claimed for the case."""
        await records.claim_uploads(self.conn, files or [], self.deps.clock())
        data = dict(event or {})
        if self.envelope is not None:
            data = {"jti": self.envelope.jti, **data}
        await records.record(
            self.conn,
            self.row,
            region=self.deps.region,
            outbox=self.deps.outbox,
            actor=self.actor.username,
            action=action or self.action.name,
            to_status=to_status,
            changes=changes,
            event=data,
            envelope=envelope,
            now=self.deps.clock(),
            actor_name=None if self.actor.partner else self.actor.display_name,
        )

    async def remember_partner_files(self, allowed: frozenset[str]) -> None:
        """Make the files of the partner's message downloadable by staff, each typed by its
        own bytes against ``allowed`` (never by the sender's label: docs/security.md)."""
        assert self.envelope is not None
        for blob in self.envelope.blobs:
            await remember_file(
                self.conn,
                self.deps.blobs,
                blob,
                allowed=allowed,
                actor=self.actor.username,
                now=self.now(),
            )

    # -- the clock's pauses ----------------------------------------------------------------

    def open_pause(self, day: date, reason: str) -> dict[str, Any]:
        """Stop the clock. One pause at a time: a case already paused (a hearing, say) stays
        paused from the day it was, and a 补正 asked meanwhile opens no second pause."""
        if self.row.paused:
            return {}
        pauses = json.loads(self.row.pauses)
        pauses.append([day.isoformat(), None, reason])
        return {
            "pauses": json.dumps(pauses, ensure_ascii=False),
            "paused": True,
            "paused_since": day.isoformat(),
        }

    def close_pause(self) -> dict[str, Any]:
        """End a pause in progress today, without moving the deadline (the case is closing)."""
        if not self.row.paused:
            return {}
        pauses = json.loads(self.row.pauses)
        pauses[-1][1] = self.today().isoformat()
        return {
            "pauses": json.dumps(pauses, ensure_ascii=False),
            "paused": False,
            "paused_since": None,
        }

    async def close_pause_and_recompute(
        self, day: date | None = None, *, reason: str | None = None
    ) -> dict[str, Any]:
        """Restart the clock and move the deadline by the pause; with ``reason``, only a
        pause opened for that reason ends (补正 supplied during a hearing: the hearing's
        pause goes on)."""
        row = self.row
        if not row.paused:
            return {}
        pauses = json.loads(row.pauses)
        if reason is not None and (len(pauses[-1]) < 3 or pauses[-1][2] != reason):
            return {}
        pauses[-1][1] = (day or self.today()).isoformat()
        changes: dict[str, Any] = {
            "pauses": json.dumps(pauses, ensure_ascii=False),
            "paused": False,
            "paused_since": None,
        }
        if row.accepted_on and row.time_limit_days:
            fields = compute(
                await self.deps.calendar(),
                accepted_on=date.fromisoformat(row.accepted_on),
                limit_days=int(row.time_limit_days),
                pauses=pauses,
                warning_days=warning_days(row),
            )
            changes.update(
                deadline=fields.deadline,
                warning_from=fields.warning_from,
                deadline_provisional=fields.provisional,
            )
        return changes


async def remember_file(
    conn: AsyncConnection,
    blobs: BlobStore,
    blob: dict[str, Any],
    *,
    allowed: frozenset[str],
    actor: str,
    now: float,
) -> None:
    """Keep an ``uploads`` row for a stored blob a partner sent, typed by its first bytes."""
    exists = (
        await conn.execute(select(uploads.c.sha256).where(uploads.c.sha256 == blob["sha256"]))
    ).first()
    if exists is not None:
        return
    head = b""
    async for chunk in blobs.read_chunks(blob["sha256"], 0, filetypes.HEAD_BYTES):
        head += chunk
    await conn.execute(
        uploads.insert().values(
            sha256=blob["sha256"],
            media_type=filetypes.classify(head, str(blob["media_type"]), allowed),
            size=blob["size"],
            name=blob["name"],
            uploaded_at=now,
            uploaded_by=actor,
            claimed_at=now,
        )
    )


def warning_days(row: Row[Any]) -> int:
    """The warning lead fixed at 受理 (the default for cases accepted before it was stored)."""
    return DEFAULT_WARNING_DAYS if row.warning_days is None else int(row.warning_days)


def clean(body: dict[str, Any]) -> dict[str, Any]:
    """Drop absent optional fields (the wire schema has no nulls where a field is optional)."""
    return {k: v for k, v in body.items() if v is not None}


def optional_text(payload: dict[str, Any], key: str, label: str, max_len: int) -> str | None:
    errors = validation.Errors()
    value = validation.text(payload, key, errors, label=label, max_len=max_len, required=False)
    errors.raise_if_any()
    return value


def type_names(media_types: list[str] | frozenset[str]) -> list[str]:
    names = {filetypes.PDF: "PDF", filetypes.JPEG: "JPG", filetypes.PNG: "PNG"}
    return [names.get(t, t) for t in media_types]


def check_file(spec: Any, upload: Row[Any], field: str, errors: validation.Errors) -> bool:
    """Whether an uploaded file suits the item's material ``spec`` (type and size)."""
    if spec is None:
        return True
    if spec.media_types and upload.media_type not in spec.media_types:
        errors.add(
            field,
            "file_type_not_accepted",
            f"「{spec.name}」只接受 {'、'.join(type_names(list(spec.media_types)))} 文件",
        )
        return False
    if spec.max_bytes and upload.size > spec.max_bytes:
        errors.add(
            field,
            "file_too_large",
            f"「{spec.name}」文件不能超过 {spec.max_bytes // (1024 * 1024)} MB",
        )
        return False
    return True
