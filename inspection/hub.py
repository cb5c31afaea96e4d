"""The live sessions of one node, and what they need from it (database, blobs, key, cases).

A replica serves a live session only while it holds the session's claim (inspection/holding.py):
``get`` claims a session before it makes a live copy, a loop renews the claims every
``RENEW_EVERY`` seconds and closes a copy whose claim was lost, and ``forget`` and ``close``
release them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiortc import RTCIceServer
from sqlalchemy import select

from inspection import passthrough
from inspection.errors import InspectionError
from inspection.holding import RENEW_EVERY, Holding
from inspection.models import inspection_sessions
from inspection.ports import CaseActions
from inspection.session import LiveSession
from node.config import InspectionSettings
from node.storage.blobs import BlobStore
from node.storage.database import Database

if TYPE_CHECKING:
    from node.federation.identity import NodeIdentity

log = logging.getLogger(__name__)

#: How long coturn time-limited credentials handed to a participant stay valid (seconds).
TURN_CREDENTIAL_TTL = 12 * 3600


def ice_servers(settings: InspectionSettings, *, now: float | None = None) -> list[dict[str, Any]]:
    """ICE servers as the browser's RTCPeerConnection wants them."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls:
        if settings.turn_secret:
            expiry = int((time.time() if now is None else now) + TURN_CREDENTIAL_TTL)
            username = f"{expiry}:tongban"
            digest = hmac.new(settings.turn_secret.encode(), username.encode(), hashlib.sha1)
            credential = base64.b64encode(digest.digest()).decode()
        else:
            username, credential = settings.turn_username, settings.turn_credential
        servers.append(
            {"urls": list(settings.turn_urls), "username": username, "credential": credential}
        )
    return servers


def aiortc_servers(servers: list[dict[str, Any]]) -> list[RTCIceServer]:
    return [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in servers
    ]


class InspectionHub:
    def __init__(
        self,
        *,
        db: Database,
        blobs: BlobStore,
        root: Path,
        region: str,
        settings: InspectionSettings,
        identity: Callable[[], NodeIdentity],
        cases: CaseActions,
        holding: Holding | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.root = root
        self.region = region
        self.settings = settings
        self.identity = identity
        self.cases = cases
        self.sessions: dict[str, LiveSession] = {}
        self.holding = holding if holding is not None else Holding(db)
        self._renewing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Renew this replica's claims while it runs."""
        self._renewing = asyncio.create_task(self._renew(), name="inspection-claims")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                lost = await self.holding.renew(list(self.sessions))
            except Exception:
                log.exception("renewing the claims on live inspection sessions failed")
                continue
            for session_id in lost:
                live = self.sessions.pop(session_id, None)
                if live is None:
                    continue
                log.warning(
                    "inspection session %s is served by another replica now; closing ours",
                    session_id,
                )
                try:
                    await live.close_all("session_elsewhere")
                except Exception:
                    log.exception("closing a live inspection session failed")

    async def get(self, session_id: str) -> LiveSession:
        live = self.sessions.get(session_id)
        if live is not None and live.started_at is not None:
            return live
        row = await self.row(session_id)
        if live is not None and row.status == "cancelled":
            await self.forget(live)  # rescheduled before anyone connected
            live = None
        if row.status in ("ended", "cancelled"):
            raise InspectionError("session_ended")
        # Loaded before, or by a request racing us: ours already; else claimed first.
        if session_id not in self.sessions and not await self.holding.claim(session_id):
            raise InspectionError("session_elsewhere")
        live = self.sessions.get(session_id)  # or by a request racing us for the claim
        if live is None:
            live = LiveSession(
                row,
                db=self.db,
                blobs=self.blobs,
                directory=self.root / session_id,
                ice_servers=aiortc_servers(ice_servers(self.settings)),
            )
            self.sessions[session_id] = live
        return live

    async def row(self, session_id: str) -> Any:
        if len(session_id) != 36:
            raise InspectionError("session_not_found")
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(inspection_sessions).where(inspection_sessions.c.id == session_id)
                )
            ).first()
        if row is None:
            raise InspectionError("session_not_found")
        return row

    async def forget(self, live: LiveSession) -> None:
        """The session is over here (ended, or cancelled): no copy, no claim."""
        if self.sessions.get(live.id) is live:
            del self.sessions[live.id]
            await self.holding.release([live.id])

    async def close(self) -> None:
        """The replica stops: every copy closed (recordings stored), every claim released for
        another replica to take at once."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        held = list(self.sessions)
        for live in list(self.sessions.values()):
            await live.close_all("node_stopping")
        self.sessions.clear()
        try:
            await self.holding.release(held)
        except Exception:
            log.exception("releasing the claims on live inspection sessions failed")


def prepare_media(settings: InspectionSettings) -> None:
    """Process-wide set-up of the media stack, once before the first session."""
    # ICE chatter names the participants' addresses: personal data stays out of the logs.
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)
    passthrough.install()
    passthrough.tune_consent(settings.consent_interval, settings.consent_failures)
