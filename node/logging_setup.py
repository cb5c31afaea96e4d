"""Structured JSON logs on stderr: one object per line, with the ``extra`` fields a call
passes (case and envelope ids). Personal data is never passed to a logger.

As a second line of defence, every message and exception text is scrubbed before it is
written (``scrub``): error text is not ours to choose (a database driver quotes the key that
violated a constraint), so Chinese resident ID numbers, mobile phone numbers and long hex
digests (query hashes) are masked wherever they appear.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


#: What ``scrub`` masks, most specific first. Boundaries: not inside a longer run of the same
#: kind of characters (a case number, a timestamp, a kid or a UUID stays readable).
_SCRUB: tuple[tuple[re.Pattern[str], str], ...] = (
    # PostgreSQL quotes the values of the row it refused in an error's DETAIL: "Key
    # (applicant_name)=(...) already exists", "Failing row contains (...)".
    (
        re.compile(r"(Key \([^()\n]*\)=)\(.*?\)(?= already exists| is not present|$)", re.M),
        r"\1(…)",
    ),
    (re.compile(r"(Failing row contains )\(.*\)"), r"\1(…)"),
    # Resident ID number (GB 11643): 17 digits and a check character, a digit or X. Masked
    # whether or not the check character is right: a mistyped ID number is still one.
    (re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])"), "[id_number]"),
    # Mainland mobile number, with or without +86 / 86.
    (re.compile(r"(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9]{9}(?![0-9])"), "[phone]"),
    # A hex digest of 128 bits or more (query hashes, HMACs, SHA-256).
    (re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])"), "[digest]"),
)


def scrub(text: str) -> str:
    """``text`` with resident ID numbers, mobile numbers and long hex digests masked."""
    for pattern, mask in _SCRUB:
        text = pattern.sub(mask, text)
    return text


class ScrubbingFilter(logging.Filter):
    """Scrubs a record's message and exception text in place, for any handler and formatter
    (``configure_logging`` puts it on its handler; JsonFormatter scrubs by itself too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScrubbingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("tongban.access").setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)


#: Paths polled by load balancers and Prometheus: not worth a log line each.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Paths whose successful requests are not logged: an envelope a partner delivered is stored
#: with its issuer, jti and arrival time, and counted (tongban_envelopes_in_total); a line
#: for each of hundreds a second cost the receiver 7 % of its event loop (bench/README.md).
#: A refused one (4xx, 5xx) is still logged.
_QUIET_WHEN_OK = frozenset({"/federation/v1/envelopes"})
#: Route parameters that are identifiers, logged under these names. Query strings are never
#: logged: they carry search terms (names) and citizens' query codes.
_ID_PARAMS = {"id": "id", "case_no": "case_no", "sha256": "sha256", "action": "action"}


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON line per request: method, route template, status, duration, and the ids in the
    path (case id or case number, blob digest) — never the query string or the body."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = request.path
        if path in _QUIET_PATHS or (path in _QUIET_WHEN_OK and response.status < 300):
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
