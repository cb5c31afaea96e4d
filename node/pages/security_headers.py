"""Security headers on every HTML answer: a Content-Security-Policy that allows no inline script,
and the usual framing, sniffing and referrer headers.

The pages load their scripts and stylesheets from ``/static`` and ``/inspection/static`` only;
server data reaches a script through ``data-*`` attributes (or a ``<script
type="application/json">`` block rendered with ``|tojson``), so ``script-src 'self'`` is all they
need. ``tests/test_pages_csp.py`` keeps the templates free of inline script, event-handler
attributes, ``javascript:`` URLs and ``style`` attributes, and the browser tests fail on any
policy violation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Every page. Each source is there because a page needs it (docs/pages.md, "Headers"):
#: scripts, styles, images (QR codes are inline SVG; snapshots and scans are same-origin files),
#: media (the inspection pages play WebRTC streams through ``srcObject``, which CSP does not
#: govern) and connections (fetch, XHR uploads, and the inspection signalling WebSocket: 'self'
#: matches ws:/wss: of the page's own host in CSP Level 3 browsers) all come from the node.
DIRECTIVES: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "media-src": "'self'",
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "frame-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}

#: Pages that embed same-origin PDFs (the material previews, ``<object type="application/pdf">``):
#: Chromium loads the PDF through ``object-src`` and shows it in a frame (``frame-src``).
#: Uploads are sniffed to PDF, JPEG or PNG and served with ``nosniff``.
PDF_PREVIEW: dict[str, str] = {"object-src": "'self'", "frame-src": "'self'"}
PDF_PREVIEW_ROUTES = frozenset({"/office/cases/{id}"})

#: The other headers of an HTML answer. Referrer-Policy is a default: the citizen pages send
#: the stricter ``no-referrer`` themselves.
OTHER_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {sources}" for name, sources in directives.items())


CONTENT_SECURITY_POLICY = policy(DIRECTIVES)
PDF_PREVIEW_POLICY = policy({**DIRECTIVES, **PDF_PREVIEW})


def policy_for(request: web.Request) -> str:
    """The policy for the page ``request`` routed to."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is not None and resource.canonical in PDF_PREVIEW_ROUTES:
        return PDF_PREVIEW_POLICY
    return CONTENT_SECURITY_POLICY


def apply(request: web.Request, response: web.StreamResponse) -> None:
    """Set the headers on ``response`` when it is an HTML answer not yet sent."""
    if response.prepared or response.content_type != "text/html":
        return
    response.headers["Content-Security-Policy"] = policy_for(request)
    for name, value in OTHER_HEADERS.items():
        response.headers.setdefault(name, value)


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Adds the Content-Security-Policy and the other security headers to HTML answers,
    including HTML error pages raised as HTTP exceptions."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        apply(request, exc)
        raise
    apply(request, response)
    return response
