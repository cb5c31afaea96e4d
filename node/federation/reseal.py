"""`tongban keys reseal` for the federation's sealed columns: every stored envelope token
(``inbound_envelopes.token``, ``outbox.token``), sealed with an older data key or kept in clear
by an older Tongban, is sealed again with the active key."""

from __future__ import annotations

from node.federation.models import INBOUND_TOKEN, OUTBOX_TOKEN
from node.storage.database import Database
from node.storage.sealing import SealsValues, reseal_all

#: (table, key column, sealed column, place) of every sealed column of the federation.
SEALED_COLUMNS = (
    ("inbound_envelopes", "jti", "token", INBOUND_TOKEN),
    ("outbox", "id", "token", OUTBOX_TOKEN),
)


async def reseal_envelopes(db: Database, sealer: SealsValues) -> dict[str, int]:
    """Re-seal the stored envelope tokens with ``sealer``'s active key, a few hundred rows per
    transaction (a running node goes on meanwhile); returns how many values moved per place."""
    moved: dict[str, int] = {}
    for table, key, column, place in SEALED_COLUMNS:
        moved[place] = await reseal_all(db, table, key, column, place, sealer)
    return moved
