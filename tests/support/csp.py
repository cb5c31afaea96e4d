"""What a Content-Security-Policy without 'unsafe-inline' forbids in HTML, found by parsing:
inline scripts, event-handler attributes, ``javascript:`` URLs, style attributes and elements.
Used on the template files as written and on the pages as the node serves them."""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: The only script element without ``src`` a page may hold: data, never executed.
DATA_SCRIPT_TYPES = frozenset({"application/json"})
_HANDLER = re.compile(r"on[a-z]+")
_JAVASCRIPT_URL = re.compile(r"^\s*javascript:", re.IGNORECASE)


class _InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def _problem(self, what: str) -> None:
        self.problems.append(f"line {self.getpos()[0]}: {what}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if _HANDLER.fullmatch(name):
                self._problem(f"<{tag}> has an event-handler attribute {name}=")
            elif name == "style":
                self._problem(f"<{tag}> has a style attribute")
            if value is not None and _JAVASCRIPT_URL.match(value):
                self._problem(f"<{tag} {name}> is a javascript: URL")
        if tag == "script":
            given = dict(attrs)
            kind = (given.get("type") or "").strip().lower()
            if "src" not in given and kind not in DATA_SCRIPT_TYPES:
                self._problem("inline <script> (move it to a static .js file)")
        elif tag == "style":
            self._problem("<style> element (move it to a stylesheet)")


def inline_code(html: str) -> list[str]:
    """Everything in ``html`` that a CSP without 'unsafe-inline' would block."""
    finder = _InlineFinder()
    finder.feed(html)
    finder.close()
    if re.search(r"javascript:", html, re.IGNORECASE):
        found = [p for p in finder.problems if "javascript:" in p]
        if not found:
            finder.problems.append("the text javascript: appears (a URL built by the template?)")
    return finder.problems


def without_jinja(template: str) -> str:
    """A template's HTML with Jinja statements and comments blanked and expressions replaced by
    ``x``, so that ``<tr{% if online %} class="new"{% endif %}>`` is not read as an ``online``
    attribute; the attributes of every branch stay."""
    template = re.sub(r"\{#.*?#\}|\{%.*?%\}", " ", template, flags=re.DOTALL)
    return re.sub(r"\{\{.*?\}\}", "x", template, flags=re.DOTALL)


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            parsed.setdefault(words[0].lower(), words[1:])
    return parsed
