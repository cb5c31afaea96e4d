"""Which partners and keys we trust: the partner directory (if the node follows one),
partners.toml over it, plus keys learned from partners' node descriptors, each learned key
signed by a key we already trusted.

Precedence (docs/protocol.md §12.1): a region in partners.toml is taken from there alone
(name, URL, keys), whatever the directory says; every other region the directory lists is a
partner with the directory's keys. A key learned from a descriptor counts for a directory
region only while the key that signed that descriptor is one the directory lists, so a key
the authority withdraws takes the keys it vouched for with it.

``partners`` and ``keys`` are replaced whole (one assignment each, no await in between)
whenever partners.toml or the directory changes: a reader never sees half of a change."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import select

from node.config import FederationSettings, plain_http_refused
from node.federation.models import partner_keys
from node.federation.partners import Partner, load_partners
from node.storage.database import Database
from protocol.descriptor import Descriptor
from protocol.directory import Directory
from protocol.keys import KeySet, TrustedKey, load_public_key_text, utc

log = logging.getLogger(__name__)


class TrustStore:
    def __init__(
        self, db: Database, partners_file: Path, settings: FederationSettings | None = None
    ) -> None:
        self._db = db
        self._partners_file = partners_file
        #: With settings, partners.toml naming a refused plain-HTTP partner is refused.
        self._settings = settings
        self._partners_mtime = 0.0
        #: The partners of partners.toml alone, as last loaded.
        self._file_partners: dict[str, Partner] = {}
        #: The directory in force and this node's own region (never its own partner).
        self._directory: Directory | None = None
        self._own_region: str | None = None
        #: The directory changed since ``reload_if_changed`` last said so.
        self._directory_changed = False
        self.partners: dict[str, Partner] = {}
        #: Where each partner comes from: "partners.toml" or "directory".
        self.sources: dict[str, str] = {}
        #: Directory regions left out because their URL may not be used (plain HTTP).
        self.refused_regions: dict[str, str] = {}
        self.keys = KeySet()

    def swept_regions(self) -> list[str]:
        """The partners whose descriptors the periodic sweep fetches: those of partners.toml.
        A directory region's keys come with the directory (its rotations arrive there); an
        unknown kid from one still fetches its descriptor on demand (``KeyRefresher``)."""
        return [r for r in self.partners if self.sources.get(r) != "directory"]

    def partner(self, region: str) -> Partner | None:
        return self.partners.get(region)

    @property
    def directory(self) -> Directory | None:
        return self._directory

    async def load(self) -> None:
        """(Re)read partners.toml and rebuild the trust with the directory in force."""
        self._partners_mtime = _mtime(self._partners_file)
        self._file_partners = load_partners(self._partners_file, self._settings)
        await self._rebuild(self._directory)

    async def apply_directory(self, directory: Directory | None, *, own_region: str) -> None:
        """Put ``directory`` in force (None: none). Additions, removals and key changes take
        effect together; ``own_region``'s entry is never a partner."""
        self._own_region = own_region
        await self._rebuild(directory)
        self._directory_changed = True

    async def _rebuild(self, directory: Directory | None) -> None:
        partners: dict[str, Partner] = {}
        sources: dict[str, str] = {}
        refused: dict[str, str] = {}
        if directory is not None:
            for region, entry in directory.entries.items():
                if region == self._own_region:
                    continue
                if self._settings is not None:
                    why = plain_http_refused(entry.url, self._settings)
                    if why is not None:
                        refused[region] = why
                        continue
                partners[region] = Partner(
                    region=region, name=entry.name, url=entry.url, keys=entry.keys
                )
                sources[region] = "directory"
        for region, partner in self._file_partners.items():
            partners[region] = partner
            sources[region] = "partners.toml"
        keys = KeySet(regions=set(partners))
        for partner in partners.values():
            for key in partner.keys:
                keys.add(key)
        async with self._db.read() as conn:
            rows = (await conn.execute(select(partner_keys))).all()
        for row in rows:
            if row.region not in partners or keys.get(row.kid) is not None:
                continue
            if sources[row.region] == "directory" and not any(
                k.kid == row.signed_by for k in partners[row.region].keys
            ):
                continue  # vouched for by a key the directory no longer lists
            keys.add(
                TrustedKey(
                    kid=row.kid,
                    region=row.region,
                    public_key=load_public_key_text(row.public_key),
                    not_before=utc(row.not_before),
                    not_after=utc(row.not_after),
                )
            )
        # The swap: no await from here to the end.
        self._directory = directory
        self.partners = partners
        self.sources = sources
        self.refused_regions = refused
        self.keys = keys

    async def reload_if_changed(self) -> bool:
        """True when partners.toml or the directory changed since the last call."""
        if _mtime(self._partners_file) != self._partners_mtime:
            await self.load()
            self._directory_changed = False
            return True
        if self._directory_changed:
            self._directory_changed = False
            return True
        return False

    async def learn(self, descriptor: Descriptor) -> list[str]:
        """Store keys of a verified descriptor that we did not trust yet; returns their kids."""
        new = [k for k in descriptor.keys if self.keys.get(k.kid) is None]
        if not new:
            return []
        now = time.time()
        async with self._db.write() as conn:
            existing = set(
                (
                    await conn.execute(
                        select(partner_keys.c.kid).where(
                            partner_keys.c.kid.in_([k.kid for k in new])
                        )
                    )
                ).scalars()
            )
            rows = [
                {
                    "kid": k.kid,
                    "region": k.region,
                    "public_key": k.to_claim()["public_key"],
                    "not_before": k.not_before.timestamp(),
                    "not_after": k.not_after.timestamp(),
                    "signed_by": descriptor.signed_by,
                    "learned_at": now,
                }
                for k in new
                if k.kid not in existing
            ]
            if rows:
                await conn.execute(partner_keys.insert(), rows)
        for key in new:
            self.keys.add(key)
        log.info(
            "learned partner keys",
            extra={"region": descriptor.region, "kids": [k.kid for k in new]},
        )
        return [k.kid for k in new]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
