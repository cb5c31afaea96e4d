"""Content-addressed blob files: ``<root>/<aa>/<bb>/<sha256>``.

Blobs are written by streaming into a temporary file while hashing, fsynced, and renamed into
place only when the digest matches; they are never held whole in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from protocol.errors import ErrorCode, ProtocolError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 256 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def remove_stale_parts(self, older_than: float = 3600.0) -> int:
        """Delete upload leftovers of a crashed process (a finally block does not run on
        SIGKILL). Only old ones: another replica may be writing a fresh one right now."""
        removed = 0
        cutoff = time.time() - older_than
        for part in self._tmp.glob("*.part"):
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ProtocolError(ErrorCode.BAD_PATH, "not a sha256 digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def size(self, sha256: str) -> int | None:
        """Size of the stored blob, or None if we do not hold it."""
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, sha256: str) -> bool:
        return self.size(sha256) is not None

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, max_bytes: int, expected: str | None = None
    ) -> tuple[str, int, bool]:
        """Store the bytes of ``chunks``; returns (sha256, size, created).

        Raises ``blob_too_large`` past ``max_bytes`` and ``blob_digest_mismatch`` if
        ``expected`` is given and differs. Nothing is left behind on failure.
        """
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        loop = asyncio.get_running_loop()
        handle = open(tmp, "wb")  # noqa: SIM115 - closed in finally, across awaits
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ProtocolError(ErrorCode.BLOB_TOO_LARGE, f"over {max_bytes} bytes")
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            await loop.run_in_executor(None, os.fsync, handle.fileno())
            handle.close()
            sha256 = digest.hexdigest()
            if expected is not None and sha256 != expected:
                raise ProtocolError(
                    ErrorCode.BLOB_DIGEST_MISMATCH, "bytes do not match the digest in the path"
                )
            final = self.path(sha256)
            created = not final.exists()
            if created:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                _fsync_dir(final.parent)
            return sha256, size, created
        finally:
            if not handle.closed:
                handle.close()
            if tmp.exists():
                tmp.unlink()

    async def put_bytes(self, data: bytes) -> str:
        async def one() -> AsyncIterator[bytes]:
            yield data

        sha256, _size, _created = await self.put_stream(one(), max_bytes=len(data))
        return sha256

    async def read_chunks(self, sha256: str) -> AsyncIterator[bytes]:
        with open(self.path(sha256), "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
