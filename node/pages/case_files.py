"""The files a case page shows: which blobs a case names, what each is in words, and their
stored types and sizes (decided by their bytes: node/storage/filetypes.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from node.cases.models import uploads
from node.storage.database import Database

#: What a stored file is, in words.
FILE_KINDS = {
    "application/pdf": "PDF",
    "image/jpeg": "JPG 图片",
    "image/png": "PNG 图片",
    "video/webm": "视频录像",
    "text/plain": "文本",
    "application/jose": "签名清单",
}


def files_of(case: dict[str, Any]) -> list[str]:
    """Every blob the case names: materials, 补正, decision documents, 容缺, video evidence."""
    blobs = [m.get("blob") for m in case["application"].get("materials", [])]
    details = case["details"]
    blobs += [m.get("blob") for m in (details.get("supplement") or {}).get("supplied", [])]
    blobs += [d.get("blob") for d in (details.get("decision") or {}).get("documents", [])]
    blobs += [m.get("blob") for m in case["deferred"]]
    evidence = (details.get("inspection") or {}).get("evidence") or {}
    blobs += [f.get("blob") for f in evidence.get("files", []) if isinstance(f, dict)]
    return [b for b in dict.fromkeys(blobs) if isinstance(b, str) and b]


async def stored_files(db: Database, case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The case's files that have reached this node, by SHA-256: type, size, name."""
    wanted = files_of(case)
    if not wanted:
        return {}
    async with db.read() as conn:
        rows = (await conn.execute(select(uploads).where(uploads.c.sha256.in_(wanted)))).all()
    return {r.sha256: {"media_type": r.media_type, "size": r.size, "name": r.name} for r in rows}
