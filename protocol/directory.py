"""The partner directory: one signed list of every region of a network (docs/protocol.md §12.1).

A directory authority (a province or the national platform) signs a compact JWS with header
``typ`` ``tongban-directory+jwt`` and exactly the claims ``iss`` (the authority), ``serial``
(grows with every directory it signs), ``iat``, ``exp`` and ``regions`` (each region's name,
URL and keys). A node that follows the directory trusts the regions it lists as partners.

Pure: no I/O, no clock (callers pass ``now``), no state (callers pass the serial and digest of
the directory in force). ``verify_directory`` runs its checks in the order the protocol lists
and stops at the first fault, whose code is the answer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import claims as c
from protocol import jws
from protocol.errors import ErrorCode, ProtocolError
from protocol.keys import REGION_RE, TrustedKey, key_id, load_public_key_text, public_key_text

TYP = "tongban-directory+jwt"
#: Largest directory token: room for every county-level region of the country (2 844) with
#: two keys each several times over (a 3 000-region directory is about 1.3 MB).
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
#: Most regions one directory lists.
MAX_REGIONS = 20_000
#: Most keys one region lists (as in a node descriptor).
MAX_KEYS = 20
#: Longest lifetime ``exp - iat`` of a directory: an authority re-signs at least monthly, so a
#: leaked old directory cannot stay in force for long.
MAX_DIRECTORY_LIFETIME = 31 * 24 * 3600
CLAIMS = frozenset({"iss", "serial", "iat", "exp", "regions"})
ENTRY_FIELDS = frozenset({"region", "name", "url", "keys"})
#: An authority id: a region code (a province, ``430000``) or a short name (``national``).
AUTHORITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_NAME = 100
MAX_URL = 300


@dataclass(frozen=True)
class DirectoryEntry:
    """One region as the directory lists it."""

    region: str
    name: str
    url: str
    keys: tuple[TrustedKey, ...]

    def to_claim(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "name": self.name,
            "url": self.url,
            "keys": [k.to_claim() for k in self.keys],
        }


@dataclass(frozen=True)
class Directory:
    """A verified directory."""

    iss: str
    serial: int
    iat: int
    exp: int
    entries: dict[str, DirectoryEntry]
    signed_by: str
    #: SHA-256 hex of the compact token as received.
    digest: str


@dataclass(frozen=True)
class AuthorityKey:
    """A public key of the directory authority, as a node's ``[directory] authority_keys``
    lists it. Its kid is ``<authority>:<first 16 hex digits of SHA-256(raw key)>``."""

    authority: str
    public_key: Ed25519PublicKey

    @property
    def kid(self) -> str:
        return key_id(self.authority, self.public_key)

    @classmethod
    def from_text(cls, authority: str, text: str) -> AuthorityKey:
        """ValueError if ``authority`` or the key text is not well formed."""
        if not AUTHORITY_RE.match(authority):
            raise ValueError(f"authority {authority!r} is not an authority id")
        return cls(authority=authority, public_key=load_public_key_text(text))

    def text(self) -> str:
        return public_key_text(self.public_key)


def authority_kid(authority: str, key: Ed25519PrivateKey) -> str:
    return key_id(authority, key.public_key())


def directory_claims(
    *, iss: str, serial: int, iat: int, exp: int, entries: list[DirectoryEntry]
) -> dict[str, Any]:
    """The claims of a directory listing ``entries`` (checked as a verifier would)."""
    claims: dict[str, Any] = {
        "iss": iss,
        "serial": serial,
        "iat": iat,
        "exp": exp,
        "regions": [e.to_claim() for e in entries],
    }
    check_claims(claims)
    check_regions(claims["regions"])
    return claims


def sign_directory(claims: dict[str, Any], key: Ed25519PrivateKey, *, authority: str) -> str:
    """Sign ``claims`` (from ``directory_claims``, or read back from JSON) with the
    authority's key; refuses claims a node would refuse (ProtocolError)."""
    check_claims(claims)
    if claims["iss"] != authority:
        raise ProtocolError(ErrorCode.DIRECTORY_INVALID_CLAIMS, "iss is the signing authority")
    check_regions(claims["regions"])
    return jws.sign(claims, key, kid=authority_kid(authority, key), typ=TYP)


def verify_directory(
    token: bytes | str,
    authority_keys: list[AuthorityKey],
    *,
    now: float,
    in_force: tuple[int, str] | None = None,
) -> Directory:
    """Verify a directory; ``in_force`` is ``(serial, digest)`` of the directory this node
    applies now, if any. Raises ProtocolError with the first fault's code.

    The same bytes as the directory in force verify (nothing new: the caller applies nothing).
    """
    parsed = jws.parse(token, typ=TYP, max_size=MAX_DIRECTORY_BYTES)
    key = next((k for k in authority_keys if k.kid == parsed.kid), None)
    if key is None:
        raise ProtocolError(
            ErrorCode.DIRECTORY_UNKNOWN_KEY, f"{parsed.kid} is not a configured authority key"
        )
    jws.check_signature(parsed, key.public_key)
    claims = parsed.claims
    check_claims(claims)
    if claims["iss"] != key.authority:
        raise ProtocolError(ErrorCode.DIRECTORY_INVALID_CLAIMS, "iss is not the key's authority")
    iat, exp, serial = claims["iat"], claims["exp"], claims["serial"]
    if iat > now + c.CLOCK_SKEW:
        raise ProtocolError(ErrorCode.DIRECTORY_NOT_YET_VALID, "iat is in the future")
    if exp < now - c.CLOCK_SKEW:
        raise ProtocolError(ErrorCode.DIRECTORY_STALE, "the directory has expired")
    digest = parsed.digest
    if in_force is not None:
        serial_in_force, digest_in_force = in_force
        if serial < serial_in_force:
            raise ProtocolError(
                ErrorCode.DIRECTORY_REPLAYED,
                f"serial {serial} is older than {serial_in_force} in force",
            )
        if serial == serial_in_force and digest != digest_in_force:
            raise ProtocolError(
                ErrorCode.DIRECTORY_REPLAYED,
                f"serial {serial} is in force with other content",
            )
    entries = check_regions(claims["regions"])
    return Directory(
        iss=claims["iss"],
        serial=serial,
        iat=iat,
        exp=exp,
        entries=entries,
        signed_by=parsed.kid,
        digest=digest,
    )


def check_claims(claims: dict[str, Any]) -> None:
    """Exactly the five claims with their types; ``iat < exp <= iat + 31 days``."""
    bad = ErrorCode.DIRECTORY_INVALID_CLAIMS
    if set(claims) != CLAIMS:
        raise ProtocolError(bad, "a directory has exactly iss, serial, iat, exp, regions")
    iss = claims["iss"]
    if not isinstance(iss, str) or not AUTHORITY_RE.match(iss):
        raise ProtocolError(bad, "iss is an authority id")
    try:
        c.integer(claims, "serial", minimum=1)
        iat = c.integer(claims, "iat")
        exp = c.integer(claims, "exp")
    except ProtocolError as exc:
        raise ProtocolError(bad, exc.detail) from exc
    if exp <= iat:
        raise ProtocolError(bad, "exp must be after iat")
    if exp - iat > MAX_DIRECTORY_LIFETIME:
        raise ProtocolError(bad, "exp - iat is at most 31 days")
    regions = claims["regions"]
    if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
        raise ProtocolError(bad, f"regions is a list of at most {MAX_REGIONS} entries")


def check_regions(regions: list[Any]) -> dict[str, DirectoryEntry]:
    """Every entry well formed, no region twice; the entries by region."""
    entries: dict[str, DirectoryEntry] = {}
    for index, entry in enumerate(regions):
        parsed = check_entry(entry, index)
        if parsed.region in entries:
            raise ProtocolError(
                ErrorCode.DIRECTORY_DUPLICATE_REGION,
                f"regions[{index}]: region {parsed.region} is listed twice",
            )
        entries[parsed.region] = parsed
    return entries


def check_entry(entry: Any, index: int) -> DirectoryEntry:
    where = f"regions[{index}]"
    invalid = ErrorCode.DIRECTORY_INVALID_ENTRY
    if not isinstance(entry, dict) or set(entry) != ENTRY_FIELDS:
        raise ProtocolError(invalid, f"{where}: exactly region, name, url, keys")
    region, name, url, keys = entry["region"], entry["name"], entry["url"], entry["keys"]
    if not isinstance(region, str) or not REGION_RE.match(region):
        raise ProtocolError(invalid, f"{where}: region is a 6-digit region code string")
    where = f"{where} ({region})"
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise ProtocolError(invalid, f"{where}: name is 1..{MAX_NAME} characters")
    problem = url_problem(url)
    if problem is not None:
        raise ProtocolError(ErrorCode.DIRECTORY_BAD_URL, f"{where}: {problem}")
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS:
        raise ProtocolError(ErrorCode.DIRECTORY_BAD_KEY, f"{where}: keys is 1..{MAX_KEYS} keys")
    parsed: list[TrustedKey] = []
    for number, claim in enumerate(keys):
        try:
            key = TrustedKey.from_claim(region, claim)
        except (ValueError, TypeError) as exc:
            raise ProtocolError(
                ErrorCode.DIRECTORY_BAD_KEY, f"{where}: keys[{number}]: {exc}"
            ) from exc
        if key.not_after < key.not_before:
            raise ProtocolError(
                ErrorCode.DIRECTORY_BAD_KEY, f"{where}: keys[{number}]: not_after < not_before"
            )
        if any(k.kid == key.kid for k in parsed):
            raise ProtocolError(
                ErrorCode.DIRECTORY_BAD_KEY, f"{where}: keys[{number}]: {key.kid} listed twice"
            )
        parsed.append(key)
    return DirectoryEntry(region=region, name=name, url=url, keys=tuple(parsed))


def url_problem(url: Any) -> str | None:
    """Why ``url`` is not a node base URL, or None: ``https://`` or ``http://``, a host, no
    user info, query or fragment, no trailing slash, at most ``MAX_URL`` characters.

    Whether plain HTTP may be used is the node's decision (its ``allow_plain_http``), not the
    directory's."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return f"url is a string of 1..{MAX_URL} characters"
    if not url.isascii() or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return "url is ASCII without spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "url does not parse"
    del port
    if parts.scheme not in ("https", "http"):
        return "url starts with https:// (or http://)"
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return "url names a host and no user"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "url has no query or fragment"
    if url.endswith("/"):
        return "url has no trailing slash"
    return None


def digest_of(token: bytes | str) -> str:
    data = token.encode("ascii") if isinstance(token, str) else token
    return hashlib.sha256(data).hexdigest()
