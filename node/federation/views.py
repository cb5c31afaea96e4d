"""The node API of docs/protocol.md: thin handlers over the federation services."""

from __future__ import annotations

import time

from aiohttp import web

from node.appkeys import FEDERATION
from node.federation.descriptors import our_descriptor
from node.federation.inbound import InboundService
from node.http_json import read_body
from node.storage.blobs import check_digest
from protocol.envelope import MAX_ENVELOPE_BYTES
from protocol.errors import ErrorCode, ProtocolError
from protocol.request_token import verify_request_token

JOSE = "application/jose"


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/.well-known/tongban/node")
    async def descriptor(request: web.Request) -> web.Response:
        fed = request.app[FEDERATION]
        return web.Response(body=our_descriptor(fed.identity).encode(), content_type=JOSE)

    @table.post("/federation/v1/envelopes")
    async def envelopes(request: web.Request) -> web.Response:
        fed = request.app[FEDERATION]
        inbound: InboundService = fed.inbound
        remote = request.remote
        try:
            if request.content_type != JOSE:
                raise ProtocolError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"send {JOSE}")
            if (request.content_length or 0) > MAX_ENVELOPE_BYTES:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"over {MAX_ENVELOPE_BYTES} bytes")
            # All of the body, however the network cut it, but never a byte past the limit.
            body = await read_body(request, MAX_ENVELOPE_BYTES)
            if body is None:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"over {MAX_ENVELOPE_BYTES} bytes")
        except ProtocolError as exc:
            await inbound.reject("envelopes", exc, remote=remote, size=request.content_length)
            raise
        receipt = await inbound.receive(body, remote=remote)
        return web.Response(body=receipt.encode("ascii"), content_type=JOSE)

    @table.put("/federation/v1/blobs/{sha256}")
    async def put_blob(request: web.Request) -> web.Response:
        fed = request.app[FEDERATION]
        sha256 = request.match_info["sha256"]
        try:
            check_digest(sha256)
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                raise ProtocolError(ErrorCode.TOKEN_MISSING, "Authorization: Bearer <token>")
            token = verify_request_token(
                auth[7:].strip(),
                fed.trust.keys,
                recipient=fed.identity.region,
                sha256=sha256,
                now=time.time(),
            )
            limit = fed.config.federation.max_blob_bytes
            if (request.content_length or 0) > limit:
                raise ProtocolError(ErrorCode.BLOB_TOO_LARGE, f"over {limit} bytes")
            if await fed.blobs.has(sha256):
                return web.json_response({"sha256": sha256, "stored": False}, status=200)
            _digest, size, created = await fed.blobs.put_stream(
                request.content.iter_chunked(256 * 1024), max_bytes=limit, expected=sha256
            )
        except ProtocolError as exc:
            await fed.inbound.reject(
                "blobs", exc, remote=request.remote, size=request.content_length
            )
            raise
        await fed.heard_from(token.iss)
        return web.json_response(
            {"sha256": sha256, "size": size, "stored": created}, status=201 if created else 200
        )

    @table.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        fed = request.app[FEDERATION]
        await fed.update_gauges()
        return web.Response(body=fed.metrics.render(), content_type="text/plain", charset="utf-8")

    @table.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    return table
