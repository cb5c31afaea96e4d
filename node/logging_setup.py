"""Structured JSON logs on stderr: one object per line, with the ``extra`` fields a call
passes (case and envelope ids). Personal data is never passed to a logger."""

from __future__ import annotations

import json
import logging
import sys
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("tongban.access").setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)


#: Paths polled by load balancers and Prometheus: not worth a log line each.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Route parameters that are identifiers, logged under these names. Query strings are never
#: logged: they carry search terms (names) and citizens' query codes.
_ID_PARAMS = {"id": "id", "case_no": "case_no", "sha256": "sha256", "action": "action"}


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON line per request: method, route template, status, duration, and the ids in the
    path (case id or case number, blob digest) — never the query string or the body."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = request.path
        if path in _QUIET_PATHS:
            return
        extra: dict[str, object] = {
            "method": request.method,
            "status": response.status,
            "ms": round(time * 1000, 1),
        }
        match_info = getattr(request, "match_info", None)
        route = getattr(match_info, "route", None)
        resource = getattr(route, "resource", None)
        extra["route"] = resource.canonical if resource is not None else path
        if match_info is not None:
            for key, name in _ID_PARAMS.items():
                if key in match_info:
                    extra[name] = match_info[key]
        self.logger.info("http", extra=extra)
