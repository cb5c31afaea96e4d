"""Jinja2 for the pages: one environment, zh-CN filters, and ``render``.

Templates live in ``node/pages/templates``; another package (``inspection``) may add its own
folder with ``add_template_folder``. Autoescape is on for every template.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from node.accounts.staff import ROLE_LABELS
from node.appkeys import CONFIG
from node.cases.lifecycle import STATUS_LABELS, Status
from node.clock import CHINA
from node.pages.session import CSRF, STAFF, csrf_token

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

TIME_STATUS_LABELS = {"normal": "正常", "warning": "预警", "overdue": "超期"}
MODE_LABELS = {"proxy": "异地代收代办", "joint": "多地联办", "online": "全程网办"}

_folders: list[Path] = [TEMPLATES]
_env: jinja2.Environment | None = None


def add_template_folder(folder: Path) -> None:
    """Let templates of another package be rendered (and extend ``base.html``)."""
    global _env
    if folder not in _folders:
        _folders.append(folder)
        _env = None


def environment() -> jinja2.Environment:
    global _env
    if _env is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(f) for f in _folders]),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            when=when,
            day=day,
            status_label=status_label,
            time_status_label=lambda v: TIME_STATUS_LABELS.get(str(v), str(v or "")),
            mode_label=lambda v: MODE_LABELS.get(str(v), str(v or "")),
            role_label=lambda v: ROLE_LABELS.get(str(v), str(v or "")),
            size=human_size,
            form_value=form_value,
        )
        _env = env
    return _env


def when(value: Any) -> str:
    """A moment as Beijing time, written like ``day``: ``2026年11月27日 14:05`` (UNIX seconds or
    ISO text)."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(float(value), CHINA)
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(CHINA)
    return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M}"


def day(value: Any) -> str:
    """A calendar date in Chinese: ``2026年12月3日``."""
    if not value:
        return ""
    try:
        d = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    except ValueError:
        return str(value)
    return f"{d.year}年{d.month}月{d.day}日"


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def form_value(value: Any) -> str:
    """A value typed into an application form, for people: an ISO date as ``day`` writes it."""
    text = "" if value is None else str(value)
    return day(text) if _ISO_DATE.fullmatch(text) else text


def status_label(value: Any) -> str:
    try:
        return STATUS_LABELS[Status(str(value))]
    except ValueError:
        return str(value or "")


def human_size(value: Any) -> str:
    n = float(value or 0)
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} MB"


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """Render ``template`` with the page context (staff, csrf, node) and ``context``."""
    config = request.app[CONFIG]
    base: dict[str, Any] = {
        "node_region": config.region,
        "node_name": config.name,
        "staff": request.get(STAFF),
        "csrf": request.get(CSRF, ""),
        "path": request.path,
    }
    base.update(context)
    html = environment().get_template(template).render(**base)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


async def render_page(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """``render`` for a signed-in page: fills in the CSRF token first."""
    request[CSRF] = await csrf_token(request)
    return render(request, template, status=status, **context)
