"""Content-addressed blobs: ``<aa>/<bb>/<sha256>`` in a shared folder or an S3 bucket.

``BlobStore`` is the interface; ``FolderBlobStore`` (default) keeps files under ``blob_dir``,
``S3BlobStore`` keeps objects under ``<prefix><aa>/<bb>/<sha256>`` in an S3-compatible bucket
(``[blobs] backend = "s3"``); ``open_blob_store`` picks one from the config.

Blobs are written by streaming into a temporary file while hashing and land (rename into
place, or upload) only when the digest matches; they are never held whole in memory.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import os
import re
import time
import tomllib
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiohttp import web

from node.filemodes import open_private, private_dir
from protocol.errors import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from node.config import BlobSettings, NodeConfig

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 256 * 1024


def check_digest(sha256: str) -> str:
    """``sha256`` if it is a lowercase hex SHA-256 digest, else ``bad_path``."""
    if not SHA256_RE.match(sha256):
        raise ProtocolError(ErrorCode.BAD_PATH, "not a sha256 digest")
    return sha256


def blob_key(sha256: str) -> str:
    """``<aa>/<bb>/<sha256>``: the place of a blob, relative to the store."""
    check_digest(sha256)
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def open_blob_store(config: NodeConfig) -> BlobStore:
    """The store ``config`` names (``[blobs] backend``)."""
    if config.blobs.backend == "s3":
        return S3BlobStore(config.blobs, spool_dir=config.blob_dir / "tmp")
    return FolderBlobStore(config.blob_dir)


class BlobStore(abc.ABC):
    """Content-addressed blob storage. Everything that may touch the network is async."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections (called once by the node; methods also open lazily)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close connections."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the blobs are, for messages (no secrets)."""

    def remove_stale_parts(self, older_than: float = 3600.0) -> int:
        """Delete local upload leftovers of a crashed process; returns how many."""
        return 0

    @abc.abstractmethod
    async def size(self, sha256: str) -> int | None:
        """Size of the stored blob, or None if we do not hold it."""

    async def has(self, sha256: str) -> bool:
        return await self.size(sha256) is not None

    @abc.abstractmethod
    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, max_bytes: int, expected: str | None = None
    ) -> tuple[str, int, bool]:
        """Store the bytes of ``chunks``; returns (sha256, size, created).

        Raises ``blob_too_large`` past ``max_bytes`` and ``blob_digest_mismatch`` if
        ``expected`` is given and differs. Nothing is left behind on failure.
        """

    async def put_bytes(self, data: bytes) -> str:
        async def one() -> AsyncIterator[bytes]:
            yield data

        sha256, _size, _created = await self.put_stream(one(), max_bytes=len(data))
        return sha256

    @abc.abstractmethod
    def read_chunks(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes ``[start, end)`` in chunks; FileNotFoundError if not held."""

    async def read_bytes(self, sha256: str, *, max_bytes: int = 16 * 1024 * 1024) -> bytes:
        """A small blob whole (a manifest); ``blob_too_large`` past ``max_bytes``."""
        parts = []
        total = 0
        async for chunk in self.read_chunks(sha256):
            total += len(chunk)
            if total > max_bytes:
                raise ProtocolError(ErrorCode.BLOB_TOO_LARGE, f"over {max_bytes} bytes")
            parts.append(chunk)
        return b"".join(parts)

    @abc.abstractmethod
    async def delete(self, sha256: str) -> None:
        """Remove a blob (nothing if it is not held). Only the upload janitor calls this, for
        files no case ever used (node/ops/janitor.py)."""

    @abc.abstractmethod
    def list_blobs(self) -> AsyncIterator[tuple[str, int]]:
        """(sha256, size) of every blob held, in digest order; upload leftovers skipped."""

    async def check(self) -> str:
        """Raise if the store cannot be used; else say what was checked (``tongban doctor``)."""
        return self.describe()


class FolderBlobStore(BlobStore):
    """Files ``<root>/<aa>/<bb>/<sha256>``, written to ``<root>/tmp`` first, fsynced and
    renamed into place (a shared folder: one volume, or NFS with atomic rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        # Blobs are scans of ID cards and the like: folders 0700, files 0600 (a folder that is
        # there already keeps its mode; `tongban doctor` says if it is too open).
        for folder in (root, self._tmp):
            if not folder.is_dir():
                private_dir(folder)

    def describe(self) -> str:
        return str(self.root)

    def remove_stale_parts(self, older_than: float = 3600.0) -> int:
        """Delete upload leftovers of a crashed process (a finally block does not run on
        SIGKILL). Only old ones: another replica may be writing a fresh one right now."""
        return _remove_stale(self._tmp, older_than)

    def path(self, sha256: str) -> Path:
        """The file of a blob (folder store only; code that must work with any store uses
        ``read_chunks``)."""
        return self.root / blob_key(sha256)

    async def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, max_bytes: int, expected: str | None = None
    ) -> tuple[str, int, bool]:
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        loop = asyncio.get_running_loop()
        handle = os.fdopen(open_private(tmp), "wb")  # closed in finally, across awaits
        try:
            sha256, size = await _spool(chunks, handle, max_bytes)
            await loop.run_in_executor(None, os.fsync, handle.fileno())
            handle.close()
            if expected is not None and sha256 != expected:
                raise ProtocolError(
                    ErrorCode.BLOB_DIGEST_MISMATCH, "bytes do not match the digest in the path"
                )
            final = self.path(sha256)
            created = not final.exists()
            if created:
                if not final.parent.is_dir():
                    private_dir(final.parent)
                os.replace(tmp, final)  # keeps the 0600 of the temporary file
                _fsync_dir(final.parent)
            return sha256, size, created
        finally:
            if not handle.closed:
                handle.close()
            if tmp.exists():
                tmp.unlink()

    async def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    async def read_chunks(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        with open(self.path(sha256), "rb") as handle:
            if start:
                handle.seek(start)
            left = None if end is None else max(0, end - start)
            while left is None or left > 0:
                chunk = handle.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def list_blobs(self) -> AsyncIterator[tuple[str, int]]:
        if not self.root.is_dir():
            return
        found = []
        for path in self.root.glob("??/??/*"):
            name = path.name
            in_place = path.parent.name == name[2:4] and path.parent.parent.name == name[:2]
            if SHA256_RE.match(name) and in_place and path.is_file():
                found.append((name, path))
        for name, path in sorted(found):
            try:
                yield name, path.stat().st_size
            except FileNotFoundError:
                continue

    async def check(self) -> str:
        probe = self._tmp / f"doctor-{uuid.uuid4().hex}.part"
        probe.write_bytes(b"")
        probe.unlink()
        return f"{self.root} 可写 writable"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3BlobStore(BlobStore):
    """Objects ``<prefix><aa>/<bb>/<sha256>`` in an S3-compatible bucket (aiobotocore).

    ``put_stream`` spools to a local temporary file while hashing (size limit and digest
    checked as in the folder store) and uploads only a blob whose digest matched, and only if
    the object is not there yet (HEAD): a wrong object never lands, and an object under a
    digest's key always holds those bytes. Objects are never overwritten or deleted.
    """

    def __init__(self, settings: BlobSettings, *, spool_dir: Path) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self._tmp = spool_dir
        if not self._tmp.is_dir():
            private_dir(self._tmp)
        self._client: Any = None
        self._context: Any = None
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        where = self.settings.endpoint_url or "AWS"
        return f"s3://{self.bucket}/{self.prefix} ({where})"

    def key(self, sha256: str) -> str:
        return self.prefix + blob_key(sha256)

    def remove_stale_parts(self, older_than: float = 3600.0) -> int:
        return _remove_stale(self._tmp, older_than)

    def _credentials(self) -> dict[str, str]:
        path = self.settings.credentials_file
        if path:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            names = ("access_key_id", "secret_access_key", "session_token")
            creds = {f"aws_{n}": str(data[n]) for n in names if data.get(n)}
            if "aws_access_key_id" not in creds or "aws_secret_access_key" not in creds:
                raise ValueError(f"{path}: needs access_key_id and secret_access_key")
            return creds
        key_id = os.environ.get("TONGBAN_S3_ACCESS_KEY_ID")
        secret = os.environ.get("TONGBAN_S3_SECRET_ACCESS_KEY")
        if key_id and secret:
            return {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
        return {}  # botocore's own chain: AWS_ACCESS_KEY_ID…, ~/.aws, instance role

    async def start(self) -> None:
        await self._s3()

    async def _s3(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    from aiobotocore.config import AioConfig
                    from aiobotocore.session import get_session
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise RuntimeError(
                        "[blobs] backend = \"s3\" needs aiobotocore: pip install 'tongban[s3]'"
                    ) from exc
                config = AioConfig(
                    s3={"addressing_style": self.settings.addressing_style},
                    connect_timeout=self.settings.timeout,
                    read_timeout=self.settings.timeout,
                    retries={"max_attempts": 3, "mode": "standard"},
                    # botocore's default of 10 is taken by ten slow downloads (a paused video
                    # player holds its GET): uploads and HEADs would wait behind them.
                    max_pool_connections=64,
                    # Compatible with S3 servers that do not know the newer CRC checksums.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                context = get_session().create_client(
                    "s3",
                    region_name=self.settings.region,
                    endpoint_url=self.settings.endpoint_url,
                    config=config,
                    **self._credentials(),
                )
                self._client = await context.__aenter__()
                self._context = context
        return self._client

    async def close(self) -> None:
        context, self._context, self._client = self._context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)

    async def size(self, sha256: str) -> int | None:
        key = self.key(sha256)  # a malformed digest is bad_path, not an unavailable store
        s3 = await self._s3()
        try:
            head = await s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise _unavailable(exc) from exc
        return int(head["ContentLength"])

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, max_bytes: int, expected: str | None = None
    ) -> tuple[str, int, bool]:
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            with os.fdopen(open_private(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL), "w+b") as handle:
                sha256, size = await _spool(chunks, handle, max_bytes)
                if expected is not None and sha256 != expected:
                    raise ProtocolError(
                        ErrorCode.BLOB_DIGEST_MISMATCH, "bytes do not match the digest in the path"
                    )
                if await self.size(sha256) is not None:
                    return sha256, size, False
                handle.seek(0)
                s3 = await self._s3()
                try:
                    await s3.put_object(
                        Bucket=self.bucket,
                        Key=self.key(sha256),
                        Body=handle,
                        ContentLength=size,
                        ContentType="application/octet-stream",
                    )
                except Exception as exc:
                    raise _unavailable(exc) from exc
                return sha256, size, True
        finally:
            tmp.unlink(missing_ok=True)

    async def delete(self, sha256: str) -> None:
        key = self.key(sha256)
        s3 = await self._s3()
        try:
            await s3.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if not _not_found(exc):
                raise _unavailable(exc) from exc

    async def read_chunks(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        s3 = await self._s3()
        extra = {}
        if start or end is not None:
            if end is not None and end <= start:
                return
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        key = self.key(sha256)
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=key, **extra)
        except Exception as exc:
            if _not_found(exc):
                raise FileNotFoundError(key) from exc
            raise _unavailable(exc) from exc
        async with answer["Body"] as body:
            while chunk := await body.read(CHUNK):
                yield chunk

    async def list_blobs(self) -> AsyncIterator[tuple[str, int]]:
        s3 = await self._s3()
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        found = []
        async for page in pages:
            for item in page.get("Contents", []):
                relative = str(item["Key"])[len(self.prefix) :]
                name = relative.rsplit("/", 1)[-1]
                if SHA256_RE.match(name) and relative == f"{name[:2]}/{name[2:4]}/{name}":
                    found.append((name, int(item["Size"])))
        for entry in sorted(found):
            yield entry

    async def check(self) -> str:
        s3 = await self._s3()
        await s3.head_bucket(Bucket=self.bucket)
        await s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        return f"{self.describe()} 可达 reachable"


class BlobStoreUnavailable(Exception):
    """The object store did not answer as it should (down, refused our key, timed out).
    Answered 503 ``blob_store_unavailable``: a partner or a browser tries again later."""


def _unavailable(exc: Exception) -> BlobStoreUnavailable:
    # The class and the S3 error code only: a message may carry the endpoint's details.
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""
    return BlobStoreUnavailable(f"{type(exc).__name__} {code}".strip())


def _not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound") or status == 404


async def _spool(
    chunks: AsyncIterable[bytes], handle: IO[bytes], max_bytes: int
) -> tuple[str, int]:
    """Write ``chunks`` to ``handle`` while hashing; (sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise ProtocolError(ErrorCode.BLOB_TOO_LARGE, f"over {max_bytes} bytes")
        digest.update(chunk)
        handle.write(chunk)
    handle.flush()
    return digest.hexdigest(), size


def _remove_stale(folder: Path, older_than: float) -> int:
    removed = 0
    cutoff = time.time() - older_than
    for part in folder.glob("*.part"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def blob_response(
    request: web.Request, blobs: BlobStore, sha256: str, *, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    """Stream a blob to an HTTP client from any store, with one-range requests (a browser
    seeking in a recording) answered 206. A blob never changes, so its digest is its ETag
    (``If-Range`` honoured); HEAD gets the headers only."""
    etag = f'"{sha256}"'
    start, end, status = 0, size, 200
    match = _RANGE_RE.match(request.headers.get("Range", "").strip())
    if_range = request.headers.get("If-Range")
    if match and (match.group(1) or match.group(2)) and if_range in (None, etag):
        first, last = match.group(1), match.group(2)
        if first and last and int(last) < int(first):
            pass  # an invalid range is ignored (RFC 9110 §14.2): the whole blob, 200
        else:
            if first:
                start = int(first)
                end = min(size, int(last) + 1) if last else size
            else:
                start = max(0, size - int(last))
            if start >= end:
                return web.json_response(
                    {"error": "range_not_satisfiable", "detail": f"the blob has {size} bytes"},
                    status=416,
                    headers={"Content-Range": f"bytes */{size}"},
                )
            status = 206
    response = web.StreamResponse(
        status=status,
        headers={
            **headers,
            "Content-Length": str(end - start),
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "X-Content-Type-Options": "nosniff",
        },
    )
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    await response.prepare(request)
    if request.method != "HEAD":
        async with contextlib.aclosing(blobs.read_chunks(sha256, start, end)) as chunks:
            async for chunk in chunks:
                await response.write(chunk)
    await response.write_eof()
    return response
