"""The upload janitor: files uploaded but never used by a case (an anonymous caller's, an
abandoned form's) are removed a day later, row and blob, so that nobody can fill the blob
store with files no case will ever hold (docs/security.md).

A file is removed only while it is still unclaimed (the delete is conditional, so a case
that claims it at the same moment wins and the janitor leaves it) and only when nothing else
holds the same bytes (an inspection's recording or snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sqlalchemy import delete, select

from inspection.models import inspection_items
from node.cases.models import uploads
from node.storage.blobs import BlobStore
from node.storage.database import Database

log = logging.getLogger(__name__)

#: How long an unused upload is kept, seconds.
KEEP_UNCLAIMED = 24 * 3600.0
#: How often the janitor looks, seconds.
INTERVAL = 3600.0
BATCH = 500


async def remove_unclaimed(
    db: Database, blobs: BlobStore, *, now: float, keep: float = KEEP_UNCLAIMED
) -> int:
    """Remove uploads unclaimed for ``keep`` seconds; returns how many were removed."""
    async with db.read() as conn:
        stale = [
            row.sha256
            for row in await conn.execute(
                select(uploads.c.sha256)
                .where(uploads.c.claimed_at.is_(None), uploads.c.uploaded_at < now - keep)
                .limit(BATCH)
            )
        ]
    removed = 0
    for sha256 in stale:
        async with db.write() as conn:
            gone = await conn.execute(
                delete(uploads).where(uploads.c.sha256 == sha256, uploads.c.claimed_at.is_(None))
            )
            if gone.rowcount != 1:
                continue  # claimed meanwhile
            held = (
                await conn.execute(
                    select(inspection_items.c.id).where(inspection_items.c.sha256 == sha256)
                )
            ).first()
        removed += 1
        if held is None:
            await blobs.delete(sha256)
    return removed


class UploadJanitor:
    def __init__(
        self, db: Database, blobs: BlobStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="upload-janitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                removed = await remove_unclaimed(self._db, self._blobs, now=self._clock())
                if removed:
                    log.info("removed unused uploads", extra={"count": removed})
            except Exception:
                log.exception("upload janitor failed; trying again later")
            await asyncio.sleep(INTERVAL)
