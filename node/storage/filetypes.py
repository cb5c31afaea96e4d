"""What a file is, decided from its bytes, never from a sender's label (docs/security.md).

A file's type decides how a browser treats it; a partner or citizen who could choose the label
(``text/html``, ``image/svg+xml``) could run script in a clerk's session. So every file we keep
is typed by its first bytes, and served with headers that keep a browser from doing anything
but show a PDF or picture or save the file.
"""

from __future__ import annotations

from urllib.parse import quote

#: How many leading bytes ``sniff`` needs.
HEAD_BYTES = 64
PDF = "application/pdf"
JPEG = "image/jpeg"
PNG = "image/png"
WEBM = "video/webm"
TEXT = "text/plain"
JOSE = "application/jose"
OCTET = "application/octet-stream"

#: Types a browser may show inline (a PDF viewer, an image): nothing in them runs script.
INLINE = frozenset({PDF, JPEG, PNG})
#: What a case material or a decision document may be.
DOCUMENTS = frozenset({PDF, JPEG, PNG})
#: What the files of a video inspection's evidence package may be: the recording, snapshots,
#: the signed record (UTF-8 text) and the sealed manifest (a compact JWS, ASCII).
EVIDENCE = frozenset({WEBM, JPEG, PNG, TEXT, JOSE})


def sniff(head: bytes) -> str | None:
    """The binary type of a file from its first bytes, or None."""
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska / WebM
        return WEBM
    return None


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the head is still text.
        return exc.start >= len(head) - 3
    return True


def classify(head: bytes, label: str, allowed: frozenset[str]) -> str:
    """The type to keep for a file whose first bytes are ``head`` and that its sender labelled
    ``label``, where ``allowed`` are the types its place in the case takes. A binary type comes
    from the bytes alone; text types (the inspection record, the manifest) only where allowed,
    only for text bytes, and only as one of our own text types. Anything else is
    ``application/octet-stream``: kept, and only ever downloaded."""
    sniffed = sniff(head)
    if sniffed is not None:
        return sniffed if sniffed in allowed else OCTET
    if label in (TEXT, JOSE) and label in allowed and _is_text(head):
        return label
    return OCTET


def serving_headers(media_type: str, name: str) -> dict[str, str]:
    """Headers for a stored file: a type a browser cannot turn into a page, no sniffing, shown
    inline only when it is a PDF or picture, a sandbox of its own, and never cached on a
    shared machine (files carry personal data)."""
    safe = media_type if media_type in INLINE | {WEBM} else OCTET
    disposition = "inline" if safe in INLINE else "attachment"
    if media_type == TEXT:  # the inspection record: readable text, never HTML
        safe, disposition = "text/plain; charset=utf-8", "attachment"
    return {
        "Content-Type": safe,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name or 'file')}",
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'; "
        "media-src 'self'; style-src 'unsafe-inline'",
        "Cache-Control": "private, no-store",
    }
