"""The node's pages as its router lists them."""

from __future__ import annotations

from aiohttp import web

NOT_PAGES = ("/api/", "/federation/", "/.well-known/", "/metrics", "/healthz", "/readyz", "/static")


def page_paths(app: web.Application) -> list[str]:
    """The GET routes that serve pages for people."""
    paths = []
    for route in app.router.routes():
        if route.method != "GET" or route.resource is None:
            continue
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        if not path or path.startswith(NOT_PAGES) or path == "/":
            continue  # "/" only redirects to the role's start page
        if path.endswith("/ws"):
            continue  # WebSocket
        if "/v1/" in path and not path.endswith("/invitation"):
            continue  # a JSON API beside its pages (the invitation is a printable page)
        paths.append(path)
    return sorted(set(paths))
