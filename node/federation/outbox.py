"""The transactional outbox: an envelope is signed and stored in the same transaction as the
change it announces, and delivered later by the delivery worker. Signed once: every retry
sends the same bytes. The stored token is sealed (its body holds personal data); its digest
is computed before sealing, from the bytes the partner receives."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from node.federation.identity import NodeIdentity
from node.federation.models import OUTBOX_TOKEN, outbound_sequences, outbox
from node.federation.scheduler import notify_statement
from node.storage.database import after_commit
from node.storage.prepared import Prepared
from node.storage.sealing import SealsValues
from node.storage.upserts import conflict_insert
from protocol.envelope import new_claims, sign_envelope


@dataclass(frozen=True)
class Queued:
    id: int
    jti: str
    seq: int
    digest: str


class Outbox:
    def __init__(
        self, identity: NodeIdentity, wake: Callable[[str], None], *, sealer: SealsValues
    ) -> None:
        self._identity = identity
        self._wake = wake
        self._sealer = sealer

    def set_identity(self, identity: NodeIdentity) -> None:
        self._identity = identity

    async def enqueue(
        self,
        conn: AsyncConnection,
        *,
        partner: str,
        typ: str,
        xt: str,
        body: dict[str, Any],
        blobs: list[dict[str, Any]] | None = None,
        now: float | None = None,
    ) -> Queued:
        """Sign an envelope for ``partner`` and queue it inside ``conn``'s transaction.

        ``seq`` is the next for (``xt``, ``partner``). The partner's sender is woken after
        the commit: in this process directly, in other replicas (PostgreSQL) by a NOTIFY
        sent in this transaction.
        """
        moment = time.time() if now is None else now
        seq = await _next_seq(conn, xt, partner)
        claims = new_claims(
            iss=self._identity.region,
            aud=partner,
            typ=typ,
            xt=xt,
            seq=seq,
            body=body,
            blobs=blobs,
            now=moment,
        )
        token = sign_envelope(claims, self._identity.private_key, self._identity.kid)
        # What the receiver's receipt names: SHA-256 of the compact bytes (ParsedJWS.digest),
        # without parsing back what we just signed.
        digest = hashlib.sha256(token.encode("ascii")).hexdigest()
        row_id = await _INSERT.scalar(
            conn,
            {
                "partner": partner,
                "jti": claims["jti"],
                "xt": xt,
                "seq": seq,
                "typ": typ,
                "token": self._sealer.seal(token, OUTBOX_TOKEN),
                "digest": digest,
                "blobs": " ".join(b["sha256"] for b in claims["blobs"]),
                "created_at": moment,
                "expires_at": float(claims["exp"]),
                "next_attempt_at": moment,
                "attempts": 0,
            },
        )
        if conn.dialect.name == "postgresql":
            # Every replica's scheduler LISTENs: the one that is free sends it, at commit.
            await conn.execute(notify_statement(partner))
        after_commit(conn, lambda: self._wake(partner))
        return Queued(id=row_id, jti=claims["jti"], seq=seq, digest=digest)


#: Built once, and Prepared (node/storage/prepared.py): a statement made per call costs more
#: than its execution, and so does SQLAlchemy's work around it for each message.
_INSERT = Prepared(
    outbox.insert().returning(outbox.c.id),
    (
        "partner",
        "jti",
        "xt",
        "seq",
        "typ",
        "token",
        "digest",
        "blobs",
        "created_at",
        "expires_at",
        "next_attempt_at",
        "attempts",
    ),
)


def _next_seq_statement(insert: Any) -> Any:
    return (
        insert(outbound_sequences)
        .values(xt=bindparam("xt"), partner=bindparam("partner"), next_seq=2)
        .on_conflict_do_update(
            index_elements=[outbound_sequences.c.xt, outbound_sequences.c.partner],
            set_={"next_seq": outbound_sequences.c.next_seq + 1},
        )
        .returning(outbound_sequences.c.next_seq)
    )


_NEXT_SEQ = {
    name: Prepared(_next_seq_statement(conflict_insert(name)), ("xt", "partner"))
    for name in ("postgresql", "sqlite")
}


async def _next_seq(conn: AsyncConnection, xt: str, partner: str) -> int:
    prepared = _NEXT_SEQ[conn.dialect.name]
    return int(await prepared.scalar(conn, {"xt": xt, "partner": partner})) - 1
