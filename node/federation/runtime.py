"""The running federation of one node: wires identity, trust, inbound, applier, outbox and
delivery together and keeps them current (key rotation, partners.toml edits).

The stored envelopes (``inbound_envelopes.token``, ``outbox.token``) are sealed with the
node's ``Sealer`` (node/storage/sealing.py), which the caller loads and hands in."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import func, select

from node.config import NodeConfig
from node.federation.applier import Applier, MessageHandler, RefusalHandler, accept_all
from node.federation.client import PartnerClient
from node.federation.delivery import Delivery
from node.federation.descriptors import KeyRefresher
from node.federation.identity import NodeIdentity, key_file_changed
from node.federation.inbound import InboundService
from node.federation.models import inbound_messages, outbox
from node.federation.outbox import Outbox
from node.federation.trust import TrustStore
from node.metrics import Metrics
from node.storage.blobs import open_blob_store
from node.storage.database import Database
from node.storage.sealing import FollowingSealer, Sealer
from node.turns import Turns

log = logging.getLogger(__name__)

#: Signature checks (an envelope received, a receipt back) per pass of the event loop: about
#: 3 ms of work between two looks at the network and the database threads.
TURNS_PER_PASS = 4
#: How often key and partner files are checked for changes, seconds.
WATCH_INTERVAL = 2.0
#: How often every partner's descriptor is fetched to learn rotated keys, seconds.
DESCRIPTOR_REFRESH = 600.0
#: Descriptors fetched at once by that sweep.
SWEEP_CONCURRENCY = 16


class Federation:
    def __init__(
        self,
        config: NodeConfig,
        db: Database,
        identity: NodeIdentity,
        sealer: Sealer,
    ) -> None:
        self.config = config
        self.db = db
        self.identity = identity
        #: Seals and opens the stored envelope tokens; follows `tongban keys rotate-data`
        #: (the keys file is checked with the signing key, every ``WATCH_INTERVAL``).
        self.sealer = FollowingSealer(config.dir, sealer)
        self.metrics = Metrics()
        self.blobs = open_blob_store(config)
        self.trust = TrustStore(db, config.partners_file, config.federation)
        self.client = PartnerClient(identity, self.blobs, config.federation)
        self.refresher = KeyRefresher(self.trust, self.client)
        #: Receiving and delivering share the loop with their I/O (node/turns.py).
        self.turns = Turns(TURNS_PER_PASS)
        self.delivery = Delivery(
            db=db,
            identity=identity,
            trust=self.trust,
            client=self.client,
            metrics=self.metrics,
            settings=config.federation,
            refresh_partner_keys=self.refresher.refresh,
            sealer=self.sealer,
            turns=self.turns,
        )
        self.outbox = Outbox(identity, self.delivery.wake, sealer=self.sealer)
        #: Made by ``start``, with the case domain's handlers (built from our outbox and
        #: blobs, so after this object).
        self.applier: Applier | None = None
        self.inbound = InboundService(
            db=db,
            identity=identity,
            trust=self.trust,
            blobs=self.blobs,
            metrics=self.metrics,
            refresh_partner_keys=self.refresher.refresh,
            on_stored=self._stored,
            sealer=self.sealer,
            turns=self.turns,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._sweep: asyncio.Task[None] | None = None
        # Short-lived tasks (backoff resets) kept referenced until done.
        self._background: set[asyncio.Task[None]] = set()

    async def start(
        self, handler: MessageHandler = accept_all, on_refused: RefusalHandler | None = None
    ) -> None:
        """Start receiving, applying (each message through ``handler``; a refusal answered
        by ``on_refused``) and delivering."""
        self.applier = Applier(self.db, handler, on_refused, sealer=self.sealer)
        self.blobs.remove_stale_parts()
        await self.blobs.start()
        await self.trust.load()
        await self.client.start()
        self.inbound.start()
        self.applier.start()
        await self.delivery.start()
        self._tasks.append(asyncio.create_task(self._watch(), name="watch-files"))

    async def stop(self) -> None:
        if self._sweep is not None:
            self._tasks.append(self._sweep)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.delivery.stop()
        if self.applier is not None:
            await self.applier.stop()
        await self.inbound.stop()
        await self.client.close()
        await self.blobs.close()

    def _stored(self, issuers: set[str]) -> None:
        if self.applier is not None:
            self.applier.wake()
        for region in issuers:
            task = asyncio.create_task(self.heard_from(region))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def heard_from(self, region: str) -> None:
        try:
            await self.delivery.heard_from(region)
        except Exception:
            log.exception("resetting backoff failed", extra={"partner": region})

    async def reload_identity(self) -> None:
        identity = await NodeIdentity.load(self.config, self.db)
        self.identity = identity
        for part in (self.client, self.delivery, self.outbox, self.inbound):
            part.set_identity(identity)
        log.info("signing key loaded", extra={"kid": identity.kid})

    async def _watch(self) -> None:
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                if key_file_changed(self.config, self.identity):
                    await self.reload_identity()
                if self.sealer.reload_if_changed():
                    log.info("data keys loaded", extra={"active": self.sealer.current.active})
                if await self.trust.reload_if_changed():
                    self.delivery.sync_partners()
                if time.monotonic() - last_refresh > DESCRIPTOR_REFRESH:
                    last_refresh = time.monotonic()
                    if self._sweep is None or self._sweep.done():
                        # Its own task: partners' timeouts never hold up the file watcher.
                        self._sweep = asyncio.create_task(
                            self.sweep_descriptors(), name="descriptor-sweep"
                        )
            except Exception:
                log.exception("reloading keys or partners failed")

    async def sweep_descriptors(self) -> None:
        """Fetch the sweep's descriptors, ``SWEEP_CONCURRENCY`` at a time: an unreachable
        partner waits out its own timeout without holding up the others."""
        gate = asyncio.Semaphore(SWEEP_CONCURRENCY)

        async def one(region: str) -> None:
            async with gate:
                await self.refresher.refresh(region)

        await asyncio.gather(*(one(r) for r in self.trust.swept_regions()), return_exceptions=True)

    async def update_gauges(self) -> None:
        now = time.time()
        pending = outbox.c.delivered_at.is_(None) & outbox.c.dead_at.is_(None)
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(outbox.c.partner, func.count(), func.min(outbox.c.created_at))
                    .where(pending)
                    .group_by(outbox.c.partner)
                )
            ).all()
            dead = (
                await conn.execute(
                    select(outbox.c.partner, func.count())
                    .where(outbox.c.dead_at.is_not(None))
                    .group_by(outbox.c.partner)
                )
            ).all()
            unapplied = (
                await conn.execute(
                    select(func.count()).where(inbound_messages.c.applied_at.is_(None))
                )
            ).scalar_one()
        seen = {r[0] for r in rows}
        for region in set(self.trust.partners) | seen:
            self.metrics.outbox_depth.labels(region).set(0)
            self.metrics.outbox_oldest_age.labels(region).set(0)
            self.metrics.outbox_dead.labels(region).set(0)
        for region, count, oldest in rows:
            self.metrics.outbox_depth.labels(region).set(count)
            self.metrics.outbox_oldest_age.labels(region).set(max(0.0, now - oldest))
        for region, count in dead:
            self.metrics.outbox_dead.labels(region).set(count)
        self.metrics.inbound_waiting.set(unapplied)
