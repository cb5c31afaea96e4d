"""What a node keeps of the partner directory it follows: the last good directory (the signed
token as fetched, so it is verified again after a restart) and the fetch status (its ETag, the
last check, the last refusal's code). Both live in ``DIR/directory/`` (0700, files 0600),
written atomically: a crash leaves the old file or the new one, never half of one.

``report`` is what `tongban directory status`, `tongban doctor` and the running node's
/metrics say about it (docs/protocol.md §12.1, docs/operations.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from node.config import DirectorySettings, NodeConfig
from node.filemodes import PRIVATE_FILE, private_dir
from protocol.directory import Directory, verify_directory
from protocol.errors import ProtocolError

FOLDER = "directory"
TOKEN_FILE = "directory.jwt"
STATUS_FILE = "status.json"


@dataclass
class FetchStatus:
    """The follower's bookkeeping, kept across restarts."""

    #: The ETag of the directory in force, sent as If-None-Match.
    etag: str | None = None
    #: Last time the authority answered (200 or 304), UNIX seconds.
    checked_at: float | None = None
    #: When the directory in force was applied.
    applied_at: float | None = None
    #: Serial and digest of the last directory applied. Kept after it expires, so a node
    #: never goes back to an older directory, even with none in force.
    applied_serial: int | None = None
    applied_digest: str | None = None
    #: The code of the last refusal or failure (a ProtocolError code, or ``fetch_failed``),
    #: cleared by the next good answer.
    last_error: str | None = None
    last_error_detail: str | None = None
    last_error_at: float | None = None


def folder(config: NodeConfig) -> Path:
    return config.dir / FOLDER


def _write_atomic(path: Path, data: bytes) -> None:
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_token(config: NodeConfig, token: bytes) -> None:
    _write_atomic(folder(config) / TOKEN_FILE, token)


def load_token(config: NodeConfig) -> bytes | None:
    try:
        return (folder(config) / TOKEN_FILE).read_bytes()
    except FileNotFoundError:
        return None


def save_status(config: NodeConfig, status: FetchStatus) -> None:
    _write_atomic(folder(config) / STATUS_FILE, json.dumps(asdict(status), sort_keys=True).encode())


def load_status(config: NodeConfig) -> FetchStatus:
    try:
        data = json.loads((folder(config) / STATUS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return FetchStatus()
    if not isinstance(data, dict):
        return FetchStatus()
    known = FetchStatus.__dataclass_fields__
    return FetchStatus(**{k: v for k, v in data.items() if k in known})


def verify_kept(
    settings: DirectorySettings, token: bytes | None, now: float
) -> tuple[Directory | None, ProtocolError | None]:
    """The kept directory if it still verifies now under the configured authority keys (it
    expires; the authority keys may have changed), else the refusal."""
    if token is None:
        return None, None
    try:
        return verify_directory(token, settings.public_keys(), now=now), None
    except ProtocolError as exc:
        return None, exc


@dataclass(frozen=True)
class DirectoryReport:
    """The directory in force and the follower's status, for people and metrics."""

    configured: bool
    url: str | None
    in_force: Directory | None
    #: Why the kept directory is not in force (expired, keys changed), if one is kept.
    kept_refused: str | None
    status: FetchStatus

    def to_json(self, now: float) -> dict[str, Any]:
        d = self.in_force
        return {
            "configured": self.configured,
            "url": self.url,
            "in_force": None
            if d is None
            else {
                "iss": d.iss,
                "serial": d.serial,
                "iat": d.iat,
                "exp": d.exp,
                "age_seconds": max(0.0, now - d.iat),
                "expires_in_seconds": d.exp - now,
                "regions": len(d.entries),
                "digest": d.digest,
            },
            "kept_refused": self.kept_refused,
            **asdict(self.status),
        }


def report(config: NodeConfig, now: float) -> DirectoryReport:
    settings = config.directory
    status = load_status(config)
    if settings is None:
        return DirectoryReport(False, None, None, None, status)
    directory, refused = verify_kept(settings, load_token(config), now)
    return DirectoryReport(
        configured=True,
        url=settings.url,
        in_force=directory,
        kept_refused=str(refused.code) if refused is not None else None,
        status=status,
    )
