"""Node descriptors: ours, served at /.well-known/tongban/node, and partners', fetched to learn
rotated keys."""

from __future__ import annotations

import asyncio
import logging
import time

from node.federation.client import PartnerClient, TransportError
from node.federation.identity import NodeIdentity
from node.federation.trust import TrustStore
from protocol.descriptor import sign_descriptor, verify_descriptor
from protocol.errors import ProtocolError
from protocol.messages import MESSAGE_TYPES

log = logging.getLogger(__name__)

#: At most one descriptor fetch per partner in this many seconds: an unknown kid from a
#: forger must not make us hammer the real partner.
REFRESH_INTERVAL = 10.0


def our_descriptor(identity: NodeIdentity, now: float | None = None) -> str:
    moment = time.time() if now is None else now
    signer = identity.descriptor_signer(moment)
    return sign_descriptor(
        region=identity.region,
        name=identity.name,
        url=identity.url,
        keys=identity.published_keys(moment),
        types=list(MESSAGE_TYPES),
        now=moment,
        signing_key=signer.private_key,
        kid=signer.kid,
    )


class KeyRefresher:
    """Learns partners' new keys from their descriptors, rate-limited per partner."""

    def __init__(self, trust: TrustStore, client: PartnerClient) -> None:
        self._trust = trust
        self._client = client
        self._last: dict[str, float] = {}
        # Whether the last fetch per partner taught us at least one key.
        self._learned: dict[str, bool] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def refresh(self, region: str) -> bool:
        """Fetch ``region``'s descriptor; True if it taught us at least one new key."""
        partner = self._trust.partner(region)
        if partner is None:
            return False
        lock = self._locks.setdefault(region, asyncio.Lock())
        async with lock:
            if time.monotonic() - self._last.get(region, -REFRESH_INTERVAL) < REFRESH_INTERVAL:
                # Too soon to fetch again. If that recent fetch taught us keys (perhaps while
                # this caller waited for the lock, or just before it asked), the caller's
                # unknown kid may be one of them: tell it to look again.
                return self._learned.get(region, False)
            self._last[region] = time.monotonic()
            self._learned[region] = False
            try:
                token = await self._client.get_descriptor(partner.url)
                descriptor = verify_descriptor(
                    token, self._trust.keys, region=region, now=time.time()
                )
            except (TransportError, ProtocolError) as exc:
                log.warning(
                    "partner descriptor refused", extra={"partner": region, "why": str(exc)}
                )
                return False
            learned = bool(await self._trust.learn(descriptor))
            self._learned[region] = learned
            return learned
