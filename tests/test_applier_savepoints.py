"""Each message has a savepoint of its own in the applier's transaction
(node/federation/applier.py): what a
handler wrote before it refused or failed is undone, and nothing else is — not the messages
applied before or after it in the same transaction, not the refusal's answer (written
outside the savepoint). On SQLite (inline transaction) and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from node.federation import applier as applier_module
from node.federation.applier import Applier, BusinessRefusal
from node.federation.models import inbound_messages
from node.storage.database import Database
from node.storage.migrate import upgrade
from node.storage.savepoints import RELEASE
from node.storage.sealing import load_sealer
from protocol.envelope import Envelope, new_claims, sign_envelope
from protocol.keys import generate_private_key
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory
from tests.support.inbound import insert_inbound, stored_inbound

SENDER = "430523"
RECEIVER = "430400"

scratch = MetaData()
#: What the test's handler and refusal handler write, beside the node's own tables.
effects = Table(
    "test_applier_effects",
    scratch,
    Column("id", Integer, primary_key=True),
    Column("xt", String, nullable=False),
    Column("what", String, nullable=False),
)

#: Per case (one message each): what the handler does after writing its effect.
PLAN = {
    "XT-0": "apply",
    "XT-1": "refuse",
    "XT-2": "apply",
    "XT-3": "fail",
    "XT-4": "refuse",
    "XT-5": "apply",
    "XT-6": "apply",
}


async def _stored(databases: DatabaseFactory, xts: list[str]) -> Database:
    """A migrated database with the scratch table and one stored message per case."""
    db = Database(await databases.new_url("savepoints"))
    await upgrade(db)
    async with db.write() as conn:
        await conn.run_sync(scratch.create_all)
    key = generate_private_key()
    now = time.time()
    stored = []
    for n, xt in enumerate(xts):
        claims = new_claims(
            iss=SENDER,
            aud=RECEIVER,
            typ="case.progress",
            xt=xt,
            seq=1,
            body=example_body("case.progress")[0],
            now=now,
        )
        stored.append(stored_inbound(sign_envelope(claims, key, "kid-1"), received_at=now + n))
    async with db.write() as conn:
        await insert_inbound(conn, stored)
    return db


async def _outcomes(db: Database) -> dict[str, tuple[Any, int, bool]]:
    async with db.read() as conn:
        return {
            r.xt: (r.outcome, r.attempts, r.last_error is not None)
            for r in await conn.execute(
                select(
                    inbound_messages.c.xt,
                    inbound_messages.c.outcome,
                    inbound_messages.c.attempts,
                    inbound_messages.c.last_error,
                )
            )
        }


async def test_a_refused_or_failed_message_is_undone_alone(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # All seven in one transaction.
    monkeypatch.setattr(applier_module, "MIN_PER_TRANSACTION", len(PLAN))
    db = await _stored(databases, list(PLAN))
    transactions: set[int] = set()

    async def handler(conn: AsyncConnection, envelope: Envelope) -> None:
        transactions.add(id(conn))
        xt = envelope.xt
        await conn.execute(insert(effects).values(xt=xt, what="handler"))
        if PLAN[xt] == "refuse":
            raise BusinessRefusal("not_this_one", "refused by the test")
        if PLAN[xt] == "fail":
            raise RuntimeError("the handler broke")

    async def on_refused(
        conn: AsyncConnection, envelope: Envelope, refusal: BusinessRefusal
    ) -> None:
        await conn.execute(insert(effects).values(xt=envelope.xt, what=refusal.code))

    applier = Applier(db, handler, on_refused, sealer=load_sealer(tmp_path))
    try:
        assert await applier.apply_ready() == 6  # the failed one is left for a retry
        async with db.read() as conn:
            kept = {
                (r.xt, r.what) for r in await conn.execute(select(effects.c.xt, effects.c.what))
            }
        messages = await _outcomes(db)
    finally:
        await db.dispose()
    assert len(transactions) == 1
    assert kept == {
        ("XT-0", "handler"),
        ("XT-1", "not_this_one"),
        ("XT-2", "handler"),
        ("XT-4", "not_this_one"),
        ("XT-5", "handler"),
        ("XT-6", "handler"),
    }
    assert messages == {
        "XT-0": ("applied", 0, False),
        "XT-1": ("refused:not_this_one", 0, False),
        "XT-2": ("applied", 0, False),
        "XT-3": (None, 1, True),
        "XT-4": ("refused:not_this_one", 0, False),
        "XT-5": ("applied", 0, False),
        "XT-6": ("applied", 0, False),
    }


async def test_a_savepoint_that_cannot_be_undone_gives_the_batch_up(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A handler that broke its own savepoint and refused spoils the transaction: the batch
    is given up and applied one message a transaction, where that message fails alone."""
    monkeypatch.setattr(applier_module, "MIN_PER_TRANSACTION", 3)
    db = await _stored(databases, ["XT-0", "XT-1", "XT-2"])

    async def handler(conn: AsyncConnection, envelope: Envelope) -> None:
        await conn.execute(insert(effects).values(xt=envelope.xt, what="handler"))
        if envelope.xt == "XT-1":
            await conn.execute(text(RELEASE))
            raise BusinessRefusal("not_this_one")

    applier = Applier(db, handler, sealer=load_sealer(tmp_path))
    try:
        assert await applier.apply_ready() == 2
        async with db.read() as conn:
            kept = {r.xt for r in await conn.execute(select(effects.c.xt))}
        messages = await _outcomes(db)
    finally:
        await db.dispose()
    assert kept == {"XT-0", "XT-2"}
    assert messages == {
        "XT-0": ("applied", 0, False),
        "XT-1": (None, 1, True),
        "XT-2": ("applied", 0, False),
    }
