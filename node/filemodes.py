"""File modes of a node: only the node's own user may read what it keeps.

The node directory and every folder in it are 0700; the database (with SQLite's ``-wal`` and
``-shm``), keys, secrets and blobs are 0600. The ``tongban`` command sets umask 077 when it
starts (``set_private_umask``), and the code that makes these files and folders (``tongban
init``, ``restore``, the folder blob store) gives them their modes explicitly as well, so a
node is private whoever calls that code. ``tongban doctor`` fails files others can read
(``loose_files``). See docs/operations.md, *File modes*.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
UMASK = 0o077


def set_private_umask() -> int:
    """Files and folders made by this process from now on are the user's only; returns the
    umask before."""
    return os.umask(UMASK)


def private_dir(path: Path) -> Path:
    """Make ``path`` a folder only its owner may enter: every missing level is made 0700, and
    ``path`` itself is set to 0700 even if it was there."""
    missing = []
    level = path
    while not level.exists():
        missing.append(level)
        level = level.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> int:
    """``os.open`` with mode 0600 (a new file is never readable by others, whatever the
    umask)."""
    return os.open(path, flags, PRIVATE_FILE)


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite database URL (None for another engine or an in-memory one)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def sqlite_files(database_url: str) -> list[Path]:
    """The database file and its ``-wal`` and ``-shm`` companions (those that exist)."""
    path = sqlite_path(database_url)
    if path is None:
        return []
    candidates = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return [p for p in candidates if p.exists()]


def private_sqlite(database_url: str) -> None:
    """Before a SQLite database is opened: make its file (0600) if it is not there, so SQLite
    never creates it with the umask's mode; and set 0600 on the files that are. SQLite gives
    the ``-wal`` and ``-shm`` files it makes later the mode of the database file."""
    path = sqlite_path(database_url)
    if path is None:
        return
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(open_private(path))
    for file in sqlite_files(database_url):
        os.chmod(file, PRIVATE_FILE)


def loose(path: Path) -> int | None:
    """The mode of ``path`` if its group or others may use it, else None (or if it is gone)."""
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return None
    return mode if mode & 0o077 else None


def walk(root: Path) -> Iterator[Path]:
    """``root`` and everything under it (folders and files), without following links."""
    if not root.exists():
        return
    yield root
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            yield Path(folder) / name


def loose_files(paths: list[Path], trees: list[Path]) -> list[tuple[Path, int]]:
    """(path, mode) of each of ``paths`` and of everything under ``trees`` that its group or
    others may read or enter."""
    found = []
    seen: set[Path] = set()
    for path in [*paths, *(p for tree in trees for p in walk(tree))]:
        if path in seen:
            continue
        seen.add(path)
        mode = loose(path)
        if mode is not None:
            found.append((path, mode))
    return found


def write_private_once(path: Path, text: str) -> bool:
    """Write ``text`` to a new 0600 file at ``path`` unless one is there; returns whether this
    call made it. Written aside and hard-linked into place, so processes sharing the node
    directory (replicas) never see half a file and the first one wins; a second keeps the
    first's."""
    private_dir(path.parent)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = open_private(tmp)
    made = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            made = True
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return made


def replace_private(path: Path, text: str) -> None:
    """Replace the 0600 file at ``path`` with ``text`` atomically (a key rotation)."""
    private_dir(path.parent)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = open_private(tmp)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
