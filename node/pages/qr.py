"""QR codes for printed pages, made on the server as inline SVG (segno): the 收件凭证, the
video inspection's invitation and the 办事指南's item pages and hall sheet.

The SVG has a ``viewBox`` and no width or height, so the stylesheet sizes it without cropping;
it is an image for screen readers (``role="img"`` with ``label``). Inline SVG needs no
``img-src`` source and no script, so the pages' Content-Security-Policy stays as it is.
"""

from __future__ import annotations

from functools import lru_cache

from markupsafe import escape
from segno import make

#: Error correction: "m" recovers about 15 % of the symbol (a smudge, a fold of the paper).
ERROR_LEVEL = "m"
#: Codes kept made: segno is pure Python (some 10 ms a code, most of it choosing the mask), and
#: a page's codes rarely change (the guide's are its items' addresses).
CACHED = 4096


@lru_cache(maxsize=CACHED)
def qr_svg(data: str, *, label: str, css_class: str = "qr", border: int = 4) -> str:
    """``data`` as an inline SVG QR code. ``border`` is the quiet zone in modules (the
    standard asks for 4; printed on a white page with margins, 2 scans as well). Cached: the
    same arguments give the same text without making the code again."""
    svg = make(data, error=ERROR_LEVEL).svg_inline(
        scale=4, border=border, omitsize=True, svgclass=css_class
    )
    return str(svg).replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1)
