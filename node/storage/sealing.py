"""Personal data sealed at rest (docs/security.md): AES-256-GCM with data keys kept in a 0600
file of the node directory, never in the database, so that a copy of the database (a stolen
disk, a backup without ``--include-keys``, a local user who can read ``tongban.db``) holds no
ID number, phone or envelope body in clear.

A sealed value is text: ``enc1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``; the
associated data is the value's place (``cases.applicant_phone``), so a sealed value copied into
another column does not open. Values without the prefix are legacy plaintext and open as they
are (``tongban keys reseal`` seals them). Keys rotate: ``tongban keys rotate-data`` adds a new
active key, old keys stay to open what they sealed, and ``reseal`` moves everything to the
active key.

Lookups that need equality use a keyed blind index (HMAC-SHA256 under a separate index key
that never rotates), never the value: the citizen's query code is kept so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import bindparam, select, update
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import ColumnClause

from node.filemodes import replace_private, write_private_once
from node.storage.database import Database

FORMAT = "tongban-data-keys/1"
PREFIX = "enc1:"
FILE = Path("secrets") / "data-keys.json"


class SealingError(Exception):
    """A sealed value that does not open (unknown key, tampered, moved to another place)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Sealer:
    keys: dict[str, bytes]
    active: str
    index_key: bytes

    def seal(self, value: str, place: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.active]).encrypt(nonce, value.encode(), place.encode())
        return f"{PREFIX}{self.active}:{_b64(nonce + sealed)}"

    def open(self, value: str, place: str) -> str:
        """The plaintext of a sealed value (a legacy plaintext value as it is)."""
        if not value.startswith(PREFIX):
            return value
        key_id, _, body = value[len(PREFIX) :].partition(":")
        key = self.keys.get(key_id)
        if key is None:
            raise SealingError(f"unknown data key {key_id}")
        data = _unb64(body)
        try:
            return AESGCM(key).decrypt(data[:12], data[12:], place.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealingError(f"{place}: does not open") from exc

    def is_current(self, value: str) -> bool:
        """Whether ``value`` is sealed with the active key (``reseal`` moves the others)."""
        return value.startswith(f"{PREFIX}{self.active}:")

    def index(self, value: str, place: str) -> str:
        """A keyed blind index of ``value`` for equality lookups (hex, 64 characters)."""
        return hmac.new(self.index_key, f"{place}\0{value}".encode(), hashlib.sha256).hexdigest()


def _new_key() -> dict[str, str]:
    return {
        "id": f"k{secrets.token_hex(4)}",
        "key": _b64(AESGCM.generate_key(bit_length=256)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _read(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SealingError(f"{path}: not a {FORMAT} file")
    return data


def load_sealer(directory: Path) -> Sealer:
    """The node's sealer, from ``DIR/secrets/data-keys.json`` (made, 0600, if missing; replicas
    sharing the node directory end with one file)."""
    path = directory / FILE
    if not path.exists():
        first = _new_key()
        content = {
            "format": FORMAT,
            "active": first["id"],
            "keys": [first],
            "index_key": _b64(secrets.token_bytes(32)),
        }
        write_private_once(path, json.dumps(content, indent=1))  # a replica's first wins
    data = _read(path)
    entries = data["keys"]
    assert isinstance(entries, list)
    return Sealer(
        keys={str(e["id"]): _unb64(str(e["key"])) for e in entries},
        active=str(data["active"]),
        index_key=_unb64(str(data["index_key"])),
    )


def rotate_data_key(directory: Path) -> str:
    """Add a new active data key (old keys stay, to open what they sealed); returns its id."""
    path = directory / FILE
    load_sealer(directory)
    data = _read(path)
    entry = _new_key()
    keys = data["keys"]
    assert isinstance(keys, list)
    data["keys"] = [*keys, entry]
    data["active"] = entry["id"]
    replace_private(path, json.dumps(data, indent=1))
    return entry["id"]


def ephemeral_sealer() -> Sealer:
    """A sealer with fresh keys kept nowhere (a case service built without a node directory,
    e.g. in a bench): what it seals opens only in this process."""
    key_id = f"k{secrets.token_hex(4)}"
    return Sealer(
        keys={key_id: AESGCM.generate_key(bit_length=256)},
        active=key_id,
        index_key=secrets.token_bytes(32),
    )


class SealsValues(Protocol):
    """What seals and opens values at rest: a ``Sealer``, or a ``FollowingSealer``."""

    def seal(self, value: str, place: str) -> str: ...

    def open(self, value: str, place: str) -> str: ...

    def is_current(self, value: str) -> bool: ...

    def index(self, value: str, place: str) -> str: ...


class FollowingSealer:
    """The sealer of a running node: a ``Sealer`` that follows ``tongban keys rotate-data``.

    Every replica holds the keys file in memory; after a rotation (in one replica, or from the
    command line while the node runs) ``reload_if_changed`` picks the new file up (the
    federation checks every 2 s), so new values are sealed with the new active key. A value
    sealed with a key this process does not know yet (sealed by a replica that reloaded first,
    or moved by ``tongban keys reseal``) makes it look at the file again before it fails."""

    def __init__(self, directory: Path, sealer: Sealer | None = None) -> None:
        self._directory = directory
        self._path = directory / FILE
        self._stamp = self._stat()
        self.current = sealer if sealer is not None else load_sealer(directory)

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def reload_if_changed(self) -> bool:
        """Load the keys file again if it changed since it was read; True if it did."""
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return False
        self.current = load_sealer(self._directory)
        self._stamp = stamp
        return True

    def seal(self, value: str, place: str) -> str:
        return self.current.seal(value, place)

    def open(self, value: str, place: str) -> str:
        if value.startswith(PREFIX):
            key_id = value[len(PREFIX) :].partition(":")[0]
            if key_id not in self.current.keys:
                self.reload_if_changed()
        return self.current.open(value, place)

    def is_current(self, value: str) -> bool:
        return self.current.is_current(value)

    def index(self, value: str, place: str) -> str:
        return self.current.index(value, place)


# -- reseal ------------------------------------------------------------------------------------

#: Rows re-sealed per transaction by ``reseal_all`` (short transactions: a running node's
#: writes, on SQLite its one writer, wait for each).
RESEAL_BATCH = 200

#: What ``tongban keys reseal`` runs, once per area that seals columns: re-seal them with the
#: active key; returns the number of values re-sealed per place.
ResealHook = Callable[[Database, SealsValues], Awaitable[dict[str, int]]]


async def reseal_column(
    conn: AsyncConnection,
    table: str,
    key_column: str,
    column: str,
    place: str,
    sealer: SealsValues,
    *,
    after: Any = None,
    limit: int = RESEAL_BATCH,
) -> tuple[int, Any]:
    """Re-seal with the active key the values of ``table.column`` (sealed with an older key,
    or legacy plaintext) among the next ``limit`` rows by ``key_column`` after ``after``
    (None: from the first), inside ``conn``'s transaction.

    Returns (values re-sealed, the last key looked at, None when there were no more rows):
    pass that key as ``after`` to go on. A value that does not open raises SealingError
    (nothing is written over it). A row changed meanwhile (the update names the old value) is
    left as its writer wrote it, sealed with whatever key that writer had."""
    key: ColumnClause[Any] = sql_column(key_column)
    value: ColumnClause[Any] = sql_column(column)
    source = sql_table(table, key, value)
    query = select(key, value).select_from(source).order_by(key).limit(limit)
    if after is not None:
        query = query.where(key > after)
    rows = (await conn.execute(query)).all()
    if not rows:
        return 0, None
    changes = [
        {"b_key": row_key, "b_old": old, "b_new": sealer.seal(sealer.open(old, place), place)}
        for row_key, old in rows
        if old is not None and not sealer.is_current(old)
    ]
    if changes:
        await conn.execute(
            update(source)
            .where(key == bindparam("b_key"), value == bindparam("b_old"))
            .values({column: bindparam("b_new")}),
            changes,
        )
    return len(changes), rows[-1][0]


async def reseal_all(
    db: Database, table: str, key_column: str, column: str, place: str, sealer: SealsValues
) -> int:
    """``reseal_column`` over the whole table, ``RESEAL_BATCH`` rows per transaction; returns
    how many values were re-sealed."""
    total, after = 0, None
    while True:
        async with db.write() as conn:
            count, after = await reseal_column(
                conn, table, key_column, column, place, sealer, after=after
            )
        total += count
        if after is None:
            return total


def column_resealer(table: str, key_column: str, column: str, place: str) -> ResealHook:
    """A ``ResealHook`` for one sealed column (``reseal_all`` over it)."""

    async def hook(db: Database, sealer: SealsValues) -> dict[str, int]:
        return {place: await reseal_all(db, table, key_column, column, place, sealer)}

    return hook


async def reseal(db: Database, sealer: SealsValues, hooks: Sequence[ResealHook]) -> dict[str, int]:
    """Run every hook of ``tongban keys reseal``; values re-sealed per place."""
    moved: dict[str, int] = {}
    for hook in hooks:
        moved.update(await hook(db, sealer))
    return moved
