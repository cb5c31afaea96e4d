"""This node's identity: region, name, URL and its signing keys.

The active private key is ``DIR/node.key``; keys replaced by ``tongban keys rotate`` move to
``DIR/keys/<key-id>.key`` and keep signing the node descriptor while they are still valid, so
partners learn the new key under a signature they already trust. Validity windows live in the
``own_keys`` table.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from node.config import NodeConfig
from node.federation.models import own_keys
from node.storage.database import Database
from protocol.keys import (
    KeySet,
    TrustedKey,
    generate_private_key,
    key_id,
    load_private_key_pem,
    private_key_pem,
    public_key_text,
    utc,
)

#: Validity of a fresh key. Rotation is routine well before this runs out.
KEY_LIFETIME = 2 * 365 * 24 * 3600
#: How long a rotated-out key stays valid: the longest envelope lifetime plus a day, so that
#: envelopes signed just before the rotation verify until they expire.
RETIRED_KEY_GRACE = 8 * 24 * 3600
#: not_before is backdated by the tolerated clock skew, so partners slightly behind accept it.
BACKDATE = 300


@dataclass(frozen=True)
class OwnKey:
    kid: str
    private_key: Ed25519PrivateKey
    trusted: TrustedKey
    retired_at: float | None


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write a PKCS#8 PEM private key with mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(key))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _key_row(region: str, key: Ed25519PrivateKey, now: float) -> dict[str, object]:
    public = key.public_key()
    return {
        "kid": key_id(region, public),
        "public_key": public_key_text(public),
        "not_before": now - BACKDATE,
        "not_after": now + KEY_LIFETIME,
        "retired_at": None,
    }


class NodeIdentity:
    """Holds the loaded keys (loading is slow enough to matter per request)."""

    def __init__(self, config: NodeConfig, keys: list[OwnKey], active_kid: str) -> None:
        self.region = config.region
        self.name = config.name
        self.url = config.url
        self._keys = keys
        self._active = next(k for k in keys if k.kid == active_kid)
        self.loaded_mtime = _mtime(config.key_file)

    @property
    def active(self) -> OwnKey:
        return self._active

    @property
    def kid(self) -> str:
        return self._active.kid

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._active.private_key

    def published_keys(self, now: float) -> list[TrustedKey]:
        """Keys still valid now, oldest first: what the node descriptor lists."""
        valid = [k.trusted for k in self._keys if k.trusted.valid_at(now)]
        return sorted(valid, key=lambda k: k.not_before)

    def descriptor_signer(self, now: float) -> OwnKey:
        """The oldest key valid now: the one partners are most likely to trust already."""
        valid = [k for k in self._keys if k.trusted.valid_at(now)]
        return min(valid, key=lambda k: k.trusted.not_before) if valid else self._active

    def keyset(self) -> KeySet:
        """Our own public keys, for checking what we signed (archive audit)."""
        return KeySet([k.trusted for k in self._keys])

    @classmethod
    async def load(cls, config: NodeConfig, db: Database) -> NodeIdentity:
        """Load node.key and retired keys; register the active key if the table lacks it."""
        active = load_private_key_pem(config.key_file.read_bytes())
        private: dict[str, tuple[Ed25519PrivateKey, bool]] = {
            key_id(config.region, active.public_key()): (active, True)
        }
        if config.retired_key_dir.is_dir():
            for path in sorted(config.retired_key_dir.glob("*.key")):
                key = load_private_key_pem(path.read_bytes())
                private.setdefault(key_id(config.region, key.public_key()), (key, False))
        active_kid = key_id(config.region, active.public_key())
        async with db.write() as conn:
            rows = {r.kid: r for r in (await conn.execute(select(own_keys))).all()}
            if active_kid not in rows:
                await conn.execute(
                    own_keys.insert().values(_key_row(config.region, active, time.time()))
                )
                rows = {r.kid: r for r in (await conn.execute(select(own_keys))).all()}
        keys = []
        for kid, (key, _is_active) in private.items():
            row = rows.get(kid)
            if row is None:
                continue  # a key file the database never knew: not ours to publish
            trusted = TrustedKey(
                kid=kid,
                region=config.region,
                public_key=key.public_key(),
                not_before=utc(row.not_before),
                not_after=utc(row.not_after),
            )
            keys.append(
                OwnKey(kid=kid, private_key=key, trusted=trusted, retired_at=row.retired_at)
            )
        return cls(config, keys, active_kid)


async def rotate_key(config: NodeConfig, db: Database, now: float | None = None) -> tuple[str, str]:
    """Make a new active key; the old one moves to keys/ and stays valid for a grace period.

    Returns (old kid, new kid). A running node picks the change up within seconds.
    """
    moment = time.time() if now is None else now
    old = load_private_key_pem(config.key_file.read_bytes())
    old_kid = key_id(config.region, old.public_key())
    new = generate_private_key()
    new_row = _key_row(config.region, new, moment)
    async with db.write() as conn:
        await conn.execute(own_keys.insert().values(new_row))
        await conn.execute(
            update(own_keys)
            .where(own_keys.c.kid == old_kid)
            .values(retired_at=moment, not_after=moment + RETIRED_KEY_GRACE)
        )
        write_private_key(config.retired_key_dir / f"{old_kid.split(':')[1]}.key", old)
        write_private_key(config.key_file, new)
    return old_kid, str(new_row["kid"])


async def register_new_key(config: NodeConfig, db: Database, key: Ed25519PrivateKey) -> str:
    """Record a freshly generated node.key (used by ``tongban init``)."""
    row = _key_row(config.region, key, time.time())
    async with db.write() as conn:
        await conn.execute(own_keys.insert().values(row))
    return str(row["kid"])


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def key_file_changed(config: NodeConfig, identity: NodeIdentity) -> bool:
    return _mtime(config.key_file) != identity.loaded_mtime
