"""The one HTTP error shape: ``{"error": "<stable_code>", "detail": "..."}`` with a 4xx status.

Handlers raise ProtocolError, ApiError (staff and public API) or the case domain's CaseError
(mapped by node.api.errors); the middleware turns it into the response. Paths with ``..``
are refused before routing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from node.api.errors import case_error_response
from node.cases.errors import CaseError
from node.storage.blobs import BlobStoreUnavailable
from protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DOT_SEGMENT = re.compile(r"(^|/)(\.|%2e){2}(/|$)", re.IGNORECASE)


def error_response(status: int, code: str, detail: str = "", **extra: object) -> web.Response:
    body: dict[str, object] = {"error": code, "detail": detail}
    body.update(extra)
    return web.json_response(body, status=status)


class ApiError(Exception):
    """A refusal of the staff or public API: stable ``code`` for programs, Chinese ``message``
    for people, and per-field errors (``field`` is a dotted path, e.g. applicant.id_number)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []

    def response(self) -> web.Response:
        body: dict[str, object] = {"error": self.code, "detail": self.message}
        if self.fields:
            body["fields"] = self.fields
        return web.json_response(body, status=self.status)


def field_error(field: str, code: str, message: str) -> dict[str, str]:
    return {"field": field, "code": code, "message": message}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw = request.raw_path.split("?", 1)[0]
    if _DOT_SEGMENT.search(raw) or "%2f" in raw.lower() or "\\" in raw:
        return error_response(400, ErrorCode.BAD_PATH, "path segments . and .. are not allowed")
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except CaseError as exc:
        return case_error_response(exc)
    except ProtocolError as exc:
        return web.json_response(exc.to_json(), status=exc.http_status)
    except web.HTTPNotFound:
        return error_response(404, ErrorCode.NOT_FOUND, "no such resource")
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            405,
            "method_not_allowed",
            f"{request.method} not allowed",
            allowed=sorted(exc.allowed_methods),
        )
    except BlobStoreUnavailable as exc:
        log.warning("blob store unavailable: %s", exc, extra={"path": request.path})
        return error_response(
            503, "blob_store_unavailable", "文件存储暂不可用，请稍后重试 (blob store unavailable)"
        )
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, ErrorCode.TOO_LARGE, "request body too large")
