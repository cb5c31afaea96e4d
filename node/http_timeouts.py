"""Timeouts of a node served directly (``tongban run`` without a proxy in front).

- Waiting for a request's headers (an idle keep-alive connection, a connection that sends
  nothing, headers that never finish): aiohttp's keep-alive timer, ``keepalive_timeout``.
- Receiving a request body: ``body_timeout_middleware`` closes the connection when the body
  stops arriving for ``body_timeout`` seconds while the handler waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.config import HttpSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def server_options(settings: HttpSettings) -> dict[str, Any]:
    """Options for ``web.run_app`` / ``web.AppRunner``."""
    return {"keepalive_timeout": settings.keepalive_timeout}


def body_timeout_middleware(seconds: float) -> Middleware:
    """Close the connection of a request whose body stalls for ``seconds``.

    Only the client's stalls count: while received bytes wait unread in the buffer (the
    handler is slow, e.g. writing a blob), the clock does not run."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        watchdog = asyncio.create_task(_watch(request, seconds))
        try:
            return await handler(request)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    return middleware


async def _watch(request: web.Request, seconds: float) -> None:
    content = request.content
    seen = content.total_bytes
    while not content.is_eof():
        await asyncio.sleep(seconds)
        buffered = getattr(content, "_size", 0)
        if content.is_eof() or content.total_bytes != seen or buffered:
            seen = content.total_bytes
            continue
        log.info(
            "request body stalled: connection closed",
            extra={"method": request.method, "path": request.path, "timeout": seconds},
        )
        if request.transport is not None:
            request.transport.close()
        return
