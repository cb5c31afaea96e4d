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
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from node.filemodes import replace_private, write_private_once

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
