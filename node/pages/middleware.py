"""The pages' session middleware: answers a ``PageAnswer`` or a 404 with a page, and sets the
refreshed session cookie a page load made."""

from __future__ import annotations

from aiohttp import web

from node.accounts import sessions
from node.accounts.sessions import cookie_staff
from node.appkeys import DATABASE
from node.pages.rendering import render_page
from node.pages.session import PageAnswer, fresh_token, set_session


def _wants_html(request: web.Request) -> bool:
    machine = ("/api/", "/federation/", "/.well-known/", "/metrics", "/healthz", "/readyz")
    return not request.path.startswith(machine) and "text/html" in request.headers.get("Accept", "")


@web.middleware
async def session_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Sets the refreshed session cookie a page load made (node.pages.security_headers sets
    the pages' security headers).

    It also tells the accounts area where the node directory is before any handler runs, so
    that code which only holds the database (the inspection signalling's ``decode_token``)
    finds the token secret."""
    if DATABASE in request.app:
        sessions.database(request)
    try:
        response = await handler(request)
    except PageAnswer as answer:
        return await render_page(request, answer.template, status=answer.status, **answer.context)
    except web.HTTPNotFound:
        if not _wants_html(request):
            raise
        await cookie_staff(request)
        return await render_page(request, "not_found.html", status=404)
    fresh = fresh_token(request)
    if fresh:
        set_session(request, response, fresh)
    return response
