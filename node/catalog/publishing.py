"""Publishing our catalogue: the signed token served at ``GET /federation/v1/catalog`` and its
ETag, re-signed only when the catalogue changed or the token has been served long enough."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from node.catalog.items import our_items
from node.catalog.models import items as items_table
from node.federation.identity import NodeIdentity
from node.storage.database import Database
from protocol.catalog import Item, sign_catalog

#: A signed catalogue is served again for this long while the catalogue is unchanged, seconds
#: (the endpoint is public: it must not sign on every request).
TOKEN_REUSE = 300.0


@dataclass(frozen=True)
class PublishedCatalog:
    """Our signed catalogue and its ETag. The ETag is a digest of the items and the signing
    key id, not of the token: it stays the same while the catalogue does, across re-signing
    (every TOKEN_REUSE seconds) and across replicas."""

    token: str
    etag: str


#: (region, kid) -> (catalogue version, signed at, published).
_published: dict[tuple[str, str], tuple[tuple[int, float | None], float, PublishedCatalog]] = {}


def catalog_etag(items: list[Item], kid: str) -> str:
    """The strong ETag of a catalogue of ``items`` signed with ``kid``."""
    signed = [kid, [i.to_dict() for i in items]]
    text = json.dumps(signed, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8"))
    return f'"{digest.hexdigest()[:40]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, ``*`` matches)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        value = candidate.strip()
        if value == "*" or value.removeprefix("W/") == etag:
            return True
    return False


async def our_catalog(
    db: Database, identity: NodeIdentity, now: float | None = None
) -> PublishedCatalog:
    """Our current (not retired) items as a catalogue JWS signed with the node's active key,
    with its ETag.

    The token is reused for up to TOKEN_REUSE seconds while no item changed (the version is the
    row count and newest ``updated_at``, so a load by another replica is seen at once); a
    changed catalogue is always served with an ``iat`` after the change.
    """
    moment = time.time() if now is None else now
    async with db.read() as conn:
        count, newest = (
            await conn.execute(select(func.count(), func.max(items_table.c.updated_at)))
        ).one()
    version = (int(count), newest)
    key = (identity.region, identity.kid)
    cached = _published.get(key)
    if cached is not None and cached[0] == version and 0 <= moment - cached[1] < TOKEN_REUSE:
        return cached[2]
    current = await our_items(db)
    token = sign_catalog(identity.region, current, moment, identity.private_key, identity.kid)
    published = PublishedCatalog(token=token, etag=catalog_etag(current, identity.kid))
    _published[key] = (version, moment, published)
    return published


async def our_catalog_token(db: Database, identity: NodeIdentity, now: float | None = None) -> str:
    """The token of :func:`our_catalog`."""
    return (await our_catalog(db, identity, now)).token
