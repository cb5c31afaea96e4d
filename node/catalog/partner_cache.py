"""The cache of partners' catalogues: fetch one partner's catalogue, verify it with the
partner's keys and store it (with the search index in step), or record why it failed."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from node.catalog.index import index_region
from node.catalog.models import partner_catalogs
from node.federation.client import PartnerClient, TransportError
from node.federation.trust import TrustStore
from node.storage.database import Database
from node.storage.upserts import conflict_insert
from protocol.catalog import Catalog, verify_catalog
from protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger(__name__)


class Unknown:
    """The type of :data:`UNKNOWN`: a value the caller does not know (None is a value)."""


UNKNOWN = Unknown()


class CatalogRefreshError(Exception):
    """A partner's catalogue could not be fetched or did not verify (recorded in its row)."""

    def __init__(self, region: str, reason: str) -> None:
        super().__init__(f"{region}: {reason}")
        self.region = region
        self.reason = reason


def _upsert(conn: AsyncConnection, values: dict[str, Any]) -> Any:
    insert = conflict_insert(conn.dialect.name)
    statement = insert(partner_catalogs).values(**values)
    return statement.on_conflict_do_update(
        index_elements=[partner_catalogs.c.region],
        set_={k: v for k, v in values.items() if k != "region"},
    )


#: Records failed fetches: (region, when, reason).
FailureRecorder = Callable[[str, float, str], Awaitable[None]]


async def record_failures(db: Database, failures: list[tuple[str, float, str]]) -> None:
    """Note failed fetches in the partners' rows (when we tried, and why), in one
    transaction; the cached items stay."""
    if not failures:
        return
    async with db.write() as conn:
        insert = conflict_insert(conn.dialect.name)
        statement = insert(partner_catalogs)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[partner_catalogs.c.region],
                set_={
                    "attempted_at": statement.excluded.attempted_at,
                    "error": statement.excluded.error,
                },
            ),
            [
                {"region": region, "items": "[]", "attempted_at": when, "error": reason[:1000]}
                for region, when, reason in failures
            ],
        )


async def _record_failure(db: Database, region: str, when: float, reason: str) -> None:
    await record_failures(db, [(region, when, reason)])


async def _held_etag(db: Database, region: str) -> str | None:
    """The ETag to send: only while we hold a verified catalogue it describes."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(partner_catalogs.c.etag, partner_catalogs.c.token).where(
                    partner_catalogs.c.region == region
                )
            )
        ).first()
    return row.etag if row is not None and row.token is not None else None


async def _record_unchanged(db: Database, region: str, when: float) -> list[str]:
    """The partner answered 304 Not Modified: our copy is current; note when we checked."""
    async with db.write() as conn:
        await conn.execute(
            update(partner_catalogs)
            .where(partner_catalogs.c.region == region)
            .values(checked_at=when, attempted_at=when, error=None)
        )
        cached = (
            await conn.execute(
                select(partner_catalogs.c["items"]).where(partner_catalogs.c.region == region)
            )
        ).scalar_one()
    return [e["code"] for e in json.loads(cached) if not e.get("retired")]


async def store_partner_catalog(
    db: Database,
    token: bytes,
    catalog: Catalog,
    when: float,
    *,
    region_name: str | None = None,
    etag: str | None = None,
) -> list[str]:
    """Cache a verified partner catalogue and bring the search index in step, in one
    transaction; returns the codes it lists. Items it no longer lists stay cached, retired (and
    leave the index). A catalogue older than the cached one is not stored."""
    current = [i.to_dict() for i in catalog.items]
    codes = [i["code"] for i in current]
    async with db.write() as conn:
        query = select(partner_catalogs).where(partner_catalogs.c.region == catalog.region)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is not None and row.issued_at is not None and catalog.iat < row.issued_at:
            # Another fetch (another replica) stored a newer one meanwhile: keep it.
            await conn.execute(
                update(partner_catalogs)
                .where(partner_catalogs.c.region == catalog.region)
                .values(attempted_at=when, error=None)
            )
            return [e["code"] for e in json.loads(row._mapping["items"]) if not e.get("retired")]
        listed = set(codes)
        previous = json.loads(row._mapping["items"]) if row is not None else []
        kept = [{**e, "retired": True} for e in previous if e.get("code") not in listed]
        await conn.execute(
            _upsert(
                conn,
                {
                    "region": catalog.region,
                    "token": token.decode("ascii"),
                    "items": json.dumps(current + kept, ensure_ascii=False, separators=(",", ":")),
                    "issued_at": float(catalog.iat),
                    "fetched_at": when,
                    "attempted_at": when,
                    "checked_at": when,
                    "etag": etag,
                    "error": None,
                },
            )
        )
        await index_region(conn, catalog.region, region_name, catalog.items, own=False)
    return codes


async def refresh_partner_catalog(
    db: Database,
    trust: TrustStore,
    client: PartnerClient,
    region: str,
    *,
    now: float | None = None,
    learn_keys: Callable[[str], Awaitable[bool]] | None = None,
    held_etag: str | Unknown | None = UNKNOWN,
    on_failure: FailureRecorder | None = None,
) -> list[str]:
    """Fetch ``GET {url}/federation/v1/catalog`` of partner ``region``, verify it with the
    partner's keys and cache it; returns the codes it lists.

    The request carries ``If-None-Match`` with the ETag of the catalogue we hold: a 304 keeps
    the cache and records the check (``checked_at``). Items the partner no longer lists stay
    cached, retired. A catalogue older than the cached one is not stored. On any failure the
    reason is recorded in the partner's row (the cached items stay) and CatalogRefreshError is
    raised. ``learn_keys(region)`` (the federation's descriptor refresher) is asked once when
    the signing key is unknown, after a rotation.

    ``held_etag``: the ETag of the catalogue we hold if the caller knows it (None: we hold
    none), else it is read from the partner's row. ``on_failure``: records a failure instead
    of a transaction of its own each time (the refresher batches them).
    """
    when = time.time() if now is None else now
    partner = trust.partner(region)
    if partner is None:
        raise CatalogRefreshError(region, "not a partner")
    held = await _held_etag(db, region) if isinstance(held_etag, Unknown) else held_etag
    try:
        answer = await client.get_catalog_if_changed(partner.url, held)
        if answer.body is None:
            codes = await _record_unchanged(db, region, when)
            log.info("partner catalogue unchanged", extra={"partner": region})
            return codes
        token = answer.body
        try:
            catalog = verify_catalog(token, trust.keys, region, when)
        except ProtocolError as exc:
            if exc.code != ErrorCode.UNKNOWN_KID or learn_keys is None:
                raise
            if not await learn_keys(region):
                raise
            catalog = verify_catalog(token, trust.keys, region, when)
    except (TransportError, ProtocolError) as exc:
        reason = str(exc)
        await (on_failure or functools.partial(_record_failure, db))(region, when, reason)
        raise CatalogRefreshError(region, reason) from exc
    codes = await store_partner_catalog(
        db, token, catalog, when, region_name=partner.name, etag=answer.etag
    )
    log.info("partner catalogue stored", extra={"partner": region, "items": len(codes)})
    return codes
