"""Uploads and downloads of case files (docs/security.md).

An upload's type is decided from its first bytes before anything is kept: a file that is not
a PDF, JPEG or PNG is refused (415) and never reaches the blob store. A download is served
with the type we decided, never the sender's label, ``nosniff``, a disposition (inline only
for PDFs and pictures), a sandboxing Content-Security-Policy of its own and ``no-store``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from sqlalchemy import select

from node.accounts.auth import authenticate, require_role
from node.appkeys import CASES, DATABASE
from node.cases.errors import CaseError, CaseErrorCode
from node.cases.models import uploads
from node.storage import filetypes
from node.storage.blobs import SHA256_RE, blob_response
from protocol.errors import ProtocolError

MAX_UPLOAD = 20 * 1024 * 1024


def _too_large() -> CaseError:
    return CaseError(CaseErrorCode.FILE_TOO_LARGE, "文件不能超过 20 MB")


async def store_upload(request: web.Request, actor: str, *, now: float) -> dict[str, Any]:
    """Keep the request body as an upload of ``actor``, if it is a PDF, JPEG or PNG."""
    name = unquote(request.headers.get("X-File-Name", "upload"))
    if (request.content_length or 0) > MAX_UPLOAD:
        raise _too_large()
    content = request.content

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in content.iter_chunked(256 * 1024):
            yield chunk

    return await store_chunks(request.app, chunks(), name, actor, now=now)


async def store_chunks(
    app: web.Application, chunks: AsyncIterator[bytes], name: str, actor: str, *, now: float
) -> dict[str, Any]:
    """Keep a file arriving as ``chunks`` (an upload's body, or a file of the phone's
    application form) as an upload of ``actor``, if its first bytes make it a PDF, JPEG or
    PNG; anything else is refused before a byte is stored (docs/security.md)."""
    name = name[:200].strip() or "upload"
    head = b""
    rest = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= filetypes.HEAD_BYTES:
            break
    head, rest = head[: filetypes.HEAD_BYTES], head[filetypes.HEAD_BYTES :]
    media_type = filetypes.sniff(head)
    if media_type not in filetypes.DOCUMENTS:
        raise CaseError(CaseErrorCode.FILE_TYPE_NOT_ACCEPTED, "只接受 PDF、JPG、PNG 文件")

    async def body() -> AsyncIterator[bytes]:
        yield head
        if rest:
            yield rest
        async for chunk in chunks:
            yield chunk

    blobs = app[CASES].blobs
    try:
        sha256, size, _created = await blobs.put_stream(body(), max_bytes=MAX_UPLOAD)
    except ProtocolError as exc:
        if exc.code == "blob_too_large":
            raise _too_large() from exc
        raise
    async with app[DATABASE].write() as conn:
        exists = (
            await conn.execute(select(uploads.c.sha256).where(uploads.c.sha256 == sha256))
        ).first()
        if exists is None:
            await conn.execute(
                uploads.insert().values(
                    sha256=sha256,
                    media_type=media_type,
                    size=size,
                    name=name,
                    uploaded_at=now,
                    uploaded_by=actor,
                )
            )
    return {"sha256": sha256, "size": size, "media_type": media_type, "name": name}


async def send_file(request: web.Request, sha256: str) -> web.StreamResponse:
    if not SHA256_RE.match(sha256):
        raise CaseError(CaseErrorCode.FILE_NOT_FOUND, "文件不存在")
    async with request.app[DATABASE].read() as conn:
        row = (await conn.execute(select(uploads).where(uploads.c.sha256 == sha256))).first()
    blobs = request.app[CASES].blobs
    size = await blobs.size(sha256) if row is not None else None
    if row is None or size is None:
        raise CaseError(CaseErrorCode.FILE_NOT_FOUND, "文件不存在")
    headers = filetypes.serving_headers(row.media_type, row.name)
    return await blob_response(request, blobs, sha256, size=size, headers=headers)


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/uploads")
    async def upload(request: web.Request) -> web.Response:
        staff = await authenticate(request)
        require_role(staff, "clerk", "approver", "inspector")
        stored = await store_upload(request, staff.username, now=request.app[CASES].clock())
        return web.json_response(stored, status=201)

    @table.get("/api/v1/files/{sha256}")
    async def download(request: web.Request) -> web.StreamResponse:
        staff = await authenticate(request)
        require_role(staff, "clerk", "approver", "inspector", "supervisor", "admin")
        return await send_file(request, request.match_info["sha256"])

    return table
