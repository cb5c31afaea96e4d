"""`tongban directory serve`: the authority's small HTTP server for the signed directory.

``GET /directory`` (also ``/.well-known/tongban/directory``) answers the token file as it is
now (re-read when it changes, so signing a new directory needs no restart), with
``ETag: "<SHA-256 of the token>"``; a request whose ``If-None-Match`` names that ETag gets 304
and no body. The server signs nothing and holds no key.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

JOSE = "application/jose"
PATHS = ("/directory", "/.well-known/tongban/directory")


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, int, int]
    body: bytes
    etag: str


class DirectoryFile:
    """The token file, read again whenever its inode, size or mtime changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._loaded: _Loaded | None = None

    def current(self) -> _Loaded | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._loaded is None or self._loaded.stamp != stamp:
            body = self._path.read_bytes().strip()
            etag = f'"{hashlib.sha256(body).hexdigest()}"'
            self._loaded = _Loaded(stamp=stamp, body=body, etag=etag)
        return self._loaded


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    return any(t == etag or t == f"W/{etag}" for t in tags)


def directory_app(path: Path) -> web.Application:
    file = DirectoryFile(path)

    async def serve(request: web.Request) -> web.Response:
        loaded = file.current()
        if loaded is None:
            return web.json_response(
                {"error": "not_found", "detail": "no signed directory yet"}, status=503
            )
        headers = {"ETag": loaded.etag, "Cache-Control": "no-cache"}
        if _matches(request.headers.get("If-None-Match"), loaded.etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=loaded.body, content_type=JOSE, headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    for route in PATHS:
        app.router.add_get(route, serve)
    app.router.add_get("/healthz", healthz)
    return app
