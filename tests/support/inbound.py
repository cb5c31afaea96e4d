"""Inbound messages put straight into a receiver's store, in the rows the inbound service
writes (node/federation/inbound.py): an ``inbound_messages`` row (what the applier works
through) and its ``inbound_envelopes`` row (the signed token, sealed or in clear, and its
receipt). For tests and benches that want messages waiting to be applied without sending
them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from node.federation.models import inbound_envelopes, inbound_messages
from protocol.envelope import parse_envelope


@dataclass(frozen=True)
class StoredInbound:
    """One received envelope's two rows."""

    message: dict[str, Any]
    envelope: dict[str, Any]

    @property
    def jti(self) -> str:
        return str(self.message["jti"])


def stored_inbound(
    token: str, *, received_at: float, receipt: str = "r", stored_as: str | None = None
) -> StoredInbound:
    """The rows of ``token`` as received at ``received_at``; its ``inbound_envelopes.token``
    is ``stored_as`` when given (the token sealed, or a tampered value), else the token in
    clear (as a node made before sealing stored it)."""
    parsed = parse_envelope(token)
    claims = parsed.claims
    common = {
        "jti": claims["jti"],
        "iss": claims["iss"],
        "xt": claims["xt"],
        "seq": claims["seq"],
        "typ": claims["typ"],
    }
    return StoredInbound(
        message={**common, "received_at": received_at, "attempts": 0},
        envelope={
            **common,
            "kid": parsed.kid,
            "digest": parsed.digest,
            "token": token if stored_as is None else stored_as,
            "receipt": receipt,
            "received_at": received_at,
            "duplicate": False,
        },
    )


async def insert_inbound(conn: AsyncConnection, stored: Sequence[StoredInbound]) -> None:
    """Insert the rows of ``stored`` in the caller's transaction."""
    await conn.execute(insert(inbound_messages), [s.message for s in stored])
    await conn.execute(insert(inbound_envelopes), [s.envelope for s in stored])
