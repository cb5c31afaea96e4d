"""The directory authority's side (a province or the national platform): its signing key, the
unsigned directory built from what regions registered, and the signed directory
(docs/protocol.md §12.1, docs/operations.md "Partner directory").

The authority's private key is made at run time (`tongban directory init-authority`) into a
folder of its own (0700, key 0600) and never leaves it.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.federation.identity import write_private_key
from node.federation.partners import PartnersFileError, parse_partners
from node.filemodes import PRIVATE_FILE, private_dir
from protocol.descriptor import verify_descriptor
from protocol.directory import (
    AUTHORITY_RE,
    MAX_DIRECTORY_LIFETIME,
    DirectoryEntry,
    authority_kid,
    check_claims,
    check_regions,
    sign_directory,
)
from protocol.errors import ProtocolError
from protocol.jws import parse
from protocol.keys import (
    KeySet,
    TrustedKey,
    generate_private_key,
    load_private_key_pem,
    public_key_text,
)

KEY_FILE = "authority.key"
CONFIG_FILE = "authority.toml"
#: Default lifetime of a signed directory: a week, re-signed (with a higher serial) well before.
DEFAULT_LIFETIME = 7 * 24 * 3600


class AuthorityError(Exception):
    """Input the authority's commands refuse; the message says what to fix."""


@dataclass(frozen=True)
class Authority:
    authority: str
    key: Ed25519PrivateKey

    @property
    def kid(self) -> str:
        return authority_kid(self.authority, self.key)

    @property
    def public_key(self) -> str:
        return public_key_text(self.key.public_key())


def init_authority(folder: Path, authority: str) -> Authority:
    """A new authority folder: ``authority.toml`` (its id) and ``authority.key`` (0600)."""
    if not AUTHORITY_RE.match(authority):
        raise AuthorityError(f"authority {authority!r}: letters, digits, '.', '_', '-'")
    if (folder / KEY_FILE).exists():
        raise AuthorityError(f"{folder / KEY_FILE} exists already")
    private_dir(folder)
    key = generate_private_key()
    write_private_key(folder / KEY_FILE, key)
    fd = os.open(folder / CONFIG_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f'# Partner directory authority\nauthority = "{authority}"\n')
    return Authority(authority=authority, key=key)


def load_authority(folder: Path) -> Authority:
    try:
        data = tomllib.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        key = load_private_key_pem((folder / KEY_FILE).read_bytes())
    except FileNotFoundError as exc:
        raise AuthorityError(
            f"{exc.filename} not found: run `tongban directory init-authority`"
        ) from exc
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise AuthorityError(f"{folder}: {exc}") from exc
    authority = data.get("authority")
    if not isinstance(authority, str) or not AUTHORITY_RE.match(authority):
        raise AuthorityError(f"{folder / CONFIG_FILE}: authority is an authority id string")
    return Authority(authority=authority, key=key)


def entries_from(paths: list[Path], *, now: float) -> list[DirectoryEntry]:
    """Directory entries from partners.toml-style files (``tongban partners self`` output),
    node descriptors (``*.jwt``: a node's ``/.well-known/tongban/node``, which must verify
    under a key it lists itself) and folders of either. A region given twice is an error."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".toml", ".jwt"))
        else:
            files.append(path)
    entries: dict[str, DirectoryEntry] = {}
    for file in files:
        for entry in _entries_of(file, now):
            if entry.region in entries:
                raise AuthorityError(f"{file}: region {entry.region} is given twice")
            entries[entry.region] = entry
    return sorted(entries.values(), key=lambda e: e.region)


def _entries_of(file: Path, now: float) -> list[DirectoryEntry]:
    try:
        if file.suffix == ".jwt":
            return [_from_descriptor(file.read_bytes().strip(), now)]
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        partners = parse_partners(data, source=str(file))
    except (OSError, tomllib.TOMLDecodeError, PartnersFileError, ProtocolError) as exc:
        raise AuthorityError(f"{file}: {exc}") from exc
    return [
        DirectoryEntry(region=p.region, name=p.name, url=p.url, keys=p.keys)
        for p in partners.values()
    ]


def _from_descriptor(token: bytes, now: float) -> DirectoryEntry:
    """A descriptor signed by one of the keys it lists (the region holds that key)."""
    claims = parse(token, typ="tongban-node+jwt", max_size=64 * 1024).claims
    region = claims.get("region")
    if not isinstance(region, str):
        raise AuthorityError("a descriptor names its region")
    listed = KeySet()
    keys = claims.get("keys")
    try:
        if not isinstance(keys, list):
            raise ValueError("keys is a list")
        for claim in keys:
            listed.add(TrustedKey.from_claim(region, claim))
    except (ValueError, TypeError) as exc:
        raise AuthorityError(f"descriptor of {region}: {exc}") from exc
    descriptor = verify_descriptor(token, listed, region=region, now=now)
    return DirectoryEntry(
        region=descriptor.region,
        name=descriptor.name,
        url=descriptor.url.rstrip("/"),
        keys=tuple(descriptor.keys),
    )


def unsigned_directory(entries: list[DirectoryEntry]) -> dict[str, Any]:
    """What `tongban directory build` writes: the regions, checked as a node will check them."""
    regions = [e.to_claim() for e in entries]
    try:
        check_regions(regions)
    except ProtocolError as exc:
        raise AuthorityError(f"{exc.code}: {exc.detail}") from exc
    return {"regions": regions}


def signed_directory(
    authority: Authority,
    unsigned: dict[str, Any],
    *,
    serial: int,
    now: float,
    lifetime: int = DEFAULT_LIFETIME,
) -> str:
    """The directory token: ``unsigned``'s regions with ``iss``, ``serial``, ``iat``, ``exp``."""
    if set(unsigned) != {"regions"}:
        raise AuthorityError("an unsigned directory is an object with regions only")
    if not 0 < lifetime <= MAX_DIRECTORY_LIFETIME:
        raise AuthorityError(f"lifetime: 1..{MAX_DIRECTORY_LIFETIME} seconds")
    claims = {
        "iss": authority.authority,
        "serial": serial,
        "iat": int(now),
        "exp": int(now) + lifetime,
        "regions": unsigned["regions"],
    }
    try:
        check_claims(claims)
        return sign_directory(claims, authority.key, authority=authority.authority)
    except ProtocolError as exc:
        raise AuthorityError(f"{exc.code}: {exc.detail}") from exc


def read_unsigned(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AuthorityError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise AuthorityError(f"{path}: an object with regions")
    return data
