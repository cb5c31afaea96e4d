"""Which partner keys we trust: partners.toml (the root) plus keys learned from partners'
node descriptors, each learned key signed by a key we already trusted."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import select

from node.config import FederationSettings
from node.federation.models import partner_keys
from node.federation.partners import Partner, load_partners
from node.storage.database import Database
from protocol.descriptor import Descriptor
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
        self.partners: dict[str, Partner] = {}
        self.keys = KeySet()

    def partner(self, region: str) -> Partner | None:
        return self.partners.get(region)

    async def load(self) -> None:
        """(Re)build the key set from partners.toml and the learned keys."""
        self._partners_mtime = _mtime(self._partners_file)
        partners = load_partners(self._partners_file, self._settings)
        keys = KeySet(regions=set(partners))
        for partner in partners.values():
            for key in partner.keys:
                keys.add(key)
        async with self._db.read() as conn:
            rows = (await conn.execute(select(partner_keys))).all()
        for row in rows:
            if row.region in partners and keys.get(row.kid) is None:
                keys.add(
                    TrustedKey(
                        kid=row.kid,
                        region=row.region,
                        public_key=load_public_key_text(row.public_key),
                        not_before=utc(row.not_before),
                        not_after=utc(row.not_after),
                    )
                )
        self.partners = partners
        self.keys = keys

    async def reload_if_changed(self) -> bool:
        if _mtime(self._partners_file) != self._partners_mtime:
            await self.load()
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
