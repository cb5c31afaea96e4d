"""The evidence manifest (证据清单) of a video inspection: what a session produced, sealed by
the handling node's key (docs/inspection.md, vectors in tests/vectors/evidence/).

The manifest file is a compact JWS (EdDSA, header typ ``tongban-evidence+jwt``, kid of the
handling node's key) whose claims are ``iss`` (region), ``iat`` and ``manifest``: case,
session, participants, start and end, every other file's sha256, size and (recordings)
duration, the checklist results, the applicant's locations and the text of the signed
inspection record. It travels as one blob of ``case.inspection_completed``; the receiving node
checks the signature with the sender's trusted key and every file's digest and size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import jws
from protocol.errors import ProtocolError
from protocol.keys import region_of_kid

TYP = "tongban-evidence+jwt"
MEDIA_TYPE = "application/jose"
NAME = "evidence-manifest.jws"
MAX_BYTES = 2 * 1024 * 1024
VERSION = 1


class EvidenceError(Exception):
    """The package does not verify; ``code`` is stable."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def sign_manifest(
    manifest: dict[str, Any], key: Ed25519PrivateKey, *, kid: str, region: str, now: float
) -> bytes:
    claims = {"iss": region, "iat": int(now), "manifest": {"version": VERSION, **manifest}}
    return jws.sign(claims, key, kid=kid, typ=TYP).encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


KeyLookup = Callable[[str], Ed25519PublicKey | None]


def verify_manifest(data: bytes, *, issuer: str, keys: KeyLookup) -> dict[str, Any]:
    """The manifest of a sealed file from ``issuer``; EvidenceError otherwise."""
    try:
        parsed = jws.parse(data, typ=TYP, max_size=MAX_BYTES)
    except ProtocolError as exc:
        raise EvidenceError("evidence_manifest_invalid", exc.detail) from None
    if region_of_kid(parsed.kid) != issuer or parsed.claims.get("iss") != issuer:
        raise EvidenceError("evidence_signature_invalid", "manifest not sealed by the sender")
    key = keys(parsed.kid)
    if key is None:
        raise EvidenceError("evidence_signature_invalid", f"unknown key {parsed.kid}")
    try:
        jws.check_signature(parsed, key)
    except ProtocolError:
        raise EvidenceError("evidence_signature_invalid", "signature does not verify") from None
    manifest = parsed.claims.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise EvidenceError("evidence_manifest_invalid", "no file list")
    return manifest


def check_files(
    manifest: dict[str, Any], session_id: str, files: list[dict[str, Any]], stored: dict[str, int]
) -> None:
    """The body's files (less the manifest) are exactly the manifest's, and each stored blob has
    the manifest's size. ``stored`` maps sha256 → size as re-hashed from the receiver's disk."""
    if (manifest.get("session") or {}).get("id") != session_id:
        raise EvidenceError("evidence_manifest_invalid", "manifest of another session")
    listed = {(f.get("sha256"), f.get("kind")) for f in manifest["files"]}
    sent = {(f["blob"], f["kind"]) for f in files if f["kind"] != "manifest"}
    if listed != sent:
        raise EvidenceError("evidence_digest_mismatch", "files differ from the manifest")
    for entry in manifest["files"]:
        digest = entry.get("sha256")
        if stored.get(digest) != entry.get("size"):
            raise EvidenceError("evidence_digest_mismatch", f"file {digest} differs")
