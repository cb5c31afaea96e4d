"""HTTP routes of this area (thin: parse, call a service function, answer)."""

from __future__ import annotations

from aiohttp import web


def routes() -> web.RouteTableDef:
    return web.RouteTableDef()
