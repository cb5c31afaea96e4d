"""The health of every partner link, read from the federation tables (read-only).

For the supervisor page: per partner region, the last successful delivery, the outbox depth
(envelopes waiting), the age of the oldest waiting envelope, the waiting envelopes that have
already failed at least once (with the newest error), dead letters, and the last envelope
received from the partner. The delivery queue's in-memory state (consecutive failed rounds,
backoff) is added when the running node has one for the partner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from node.federation.models import inbound_envelopes, outbox

#: A link whose oldest waiting envelope is older than this (seconds) is shown as a problem.
STALE_AFTER = 15 * 60
#: Dead letters and failures younger than this (seconds) count as "recent".
RECENT = 7 * 24 * 3600


@dataclass
class LinkHealth:
    region: str
    name: str
    last_delivered_at: float | None = None
    last_received_at: float | None = None
    depth: int = 0
    oldest_waiting_at: float | None = None
    retrying: int = 0
    last_error: str | None = None
    dead_letters: int = 0
    recent_dead_letters: int = 0
    #: Consecutive failed delivery rounds of the running queue (None: no queue known).
    failures: int | None = None

    def oldest_age(self, now: float) -> float | None:
        return None if self.oldest_waiting_at is None else max(0.0, now - self.oldest_waiting_at)

    @property
    def level(self) -> str:
        """``ok``, ``warning`` or ``problem`` — what the page's badge says."""
        age = self.oldest_age(time.time())
        if self.recent_dead_letters or (age is not None and age > STALE_AFTER):
            return "problem"
        if self.retrying or self.failures:
            return "warning"
        return "ok"


async def link_health(
    conn: AsyncConnection,
    partners: dict[str, str],
    queues: dict[str, Any] | None = None,
    *,
    now: float | None = None,
) -> list[LinkHealth]:
    """One row per partner: ``partners`` (region → name, from partners.toml) and any region
    the outbox names. ``queues`` are the delivery's PartnerQueue objects, by region."""
    moment = time.time() if now is None else now
    links: dict[str, LinkHealth] = {r: LinkHealth(r, n) for r, n in partners.items()}

    def link(region: str) -> LinkHealth:
        return links.setdefault(region, LinkHealth(region, region))

    pending = outbox.c.delivered_at.is_(None) & outbox.c.dead_at.is_(None)
    for region, depth, oldest, retrying in (
        await conn.execute(
            select(
                outbox.c.partner,
                func.count(),
                func.min(outbox.c.created_at),
                func.count(outbox.c.last_error),
            )
            .where(pending)
            .group_by(outbox.c.partner)
        )
    ).all():
        entry = link(region)
        entry.depth, entry.oldest_waiting_at, entry.retrying = int(depth), oldest, int(retrying)
    for region, last in (
        await conn.execute(
            select(outbox.c.partner, func.max(outbox.c.delivered_at))
            .where(outbox.c.delivered_at.is_not(None))
            .group_by(outbox.c.partner)
        )
    ).all():
        link(region).last_delivered_at = last
    recent = moment - RECENT
    for region, dead, recent_dead in (
        await conn.execute(
            select(
                outbox.c.partner,
                func.count(),
                func.count(outbox.c.dead_at).filter(outbox.c.dead_at >= recent),
            )
            .where(outbox.c.dead_at.is_not(None))
            .group_by(outbox.c.partner)
        )
    ).all():
        entry = link(region)
        entry.dead_letters, entry.recent_dead_letters = int(dead), int(recent_dead)
    for region, last in (
        await conn.execute(
            select(inbound_envelopes.c.iss, func.max(inbound_envelopes.c.received_at)).group_by(
                inbound_envelopes.c.iss
            )
        )
    ).all():
        if region in links:
            links[region].last_received_at = last
    # The newest error of a waiting (retrying) envelope, or else of the newest dead letter.
    for entry in links.values():
        if not (entry.retrying or entry.dead_letters):
            continue
        error = (
            await conn.execute(
                select(outbox.c.last_error)
                .where(outbox.c.partner == entry.region, outbox.c.last_error.is_not(None))
                .where(outbox.c.delivered_at.is_(None))
                .order_by(outbox.c.id.desc())
                .limit(1)
            )
        ).scalar()
        entry.last_error = (error or "")[:200] or None
    for region, queue in (queues or {}).items():
        if region in links:
            links[region].failures = int(getattr(queue, "failures", 0) or 0)
    return sorted(links.values(), key=lambda e: e.region)
