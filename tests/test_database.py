"""The write path's priorities: an inbound store (a partner waits for its receipt) is urgent;
the applier gives way to it on SQLite, where both need the one writer connection."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from node.federation import applier as applier_module
from node.federation.applier import Applier
from node.storage.database import Database
from node.storage.migrate import upgrade
from node.storage.sealing import load_sealer
from protocol.envelope import Envelope, new_claims, sign_envelope
from protocol.keys import generate_private_key
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory, using_postgres
from tests.support.inbound import insert_inbound, stored_inbound

SENDER = "430523"
RECEIVER = "430400"


async def _database(databases: DatabaseFactory) -> Database:
    db = Database(await databases.new_url("writes"))
    await upgrade(db)
    return db


async def test_a_waiting_urgent_write_is_announced_and_a_plain_one_is_not(
    databases: DatabaseFactory,
) -> None:
    db = await _database(databases)
    try:
        order: list[str] = []
        release = asyncio.Event()
        holding = asyncio.Event()

        async def hold() -> None:
            async with db.write():
                order.append("held")
                holding.set()
                await release.wait()

        def note(label: str):  # type: ignore[no-untyped-def]
            def fn(_c: sqlite3.Connection) -> None:
                order.append(label)

            return fn

        holder = asyncio.create_task(hold())
        await holding.wait()
        if not db.is_sqlite:
            # PostgreSQL has no single writer: nobody ever waits for "the" writer.
            async with db.write(urgent=True):
                assert not db.writer_wanted
            release.set()
            await holder
            return
        plain = asyncio.create_task(db.run_write(note("plain")))
        await asyncio.sleep(0.05)
        assert not db.writer_wanted
        urgent = asyncio.create_task(db.run_write(note("urgent"), urgent=True))
        await asyncio.sleep(0.05)
        assert db.writer_wanted
        release.set()
        await asyncio.gather(holder, plain, urgent)
        assert not db.writer_wanted
        assert order == ["held", "plain", "urgent"]
    finally:
        await db.dispose()


@pytest.mark.skipif(using_postgres(), reason="the one-writer contention is SQLite's")
async def test_the_applier_gives_way_to_inbound_stores(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An inbound store that waited behind one of the applier's transactions is followed by
    a pause of the applier (twice that transaction's length), so that further stores find
    the writer free instead of queueing behind the applier's next transaction."""
    monkeypatch.setattr(applier_module, "PER_TRANSACTION", 4)
    monkeypatch.setattr(applier_module, "MIN_PER_TRANSACTION", 4)
    db = await _database(databases)
    key = generate_private_key()
    now = time.time()

    def token(n: int) -> str:
        claims = new_claims(
            iss=SENDER,
            aud=RECEIVER,
            typ="case.progress",
            xt=f"XT-{n:02d}",
            seq=1,
            body=example_body("case.progress")[0],
            now=now,
        )
        return sign_envelope(claims, key, "kid-1")

    stored = [stored_inbound(token(n), received_at=now + n) for n in range(12)]
    async with db.write() as conn:
        await insert_inbound(conn, stored)

    order: list[str] = []
    applied_at: list[tuple[float, float]] = []
    first_applied = asyncio.Event()

    async def handler(conn: AsyncConnection, envelope: Envelope) -> None:
        order.append("apply")
        first_applied.set()
        started = time.monotonic()
        await asyncio.sleep(0.02)  # holds the writer, as a real handler's statements do
        applied_at.append((started, time.monotonic()))

    def store(label: str):  # type: ignore[no-untyped-def]
        def fn(_c: sqlite3.Connection) -> None:
            order.append(label)

        return fn

    # The tokens above are stored as a node made before sealing stored them: in clear.
    applier = Applier(db, handler, sealer=load_sealer(tmp_path))
    try:
        running = asyncio.create_task(applier.apply_ready())
        await first_applied.wait()
        await db.run_write(store("store-1"), urgent=True)
        await db.run_write(store("store-2"), urgent=True)
        assert await running == 12
    finally:
        await db.dispose()
    # The first transaction (4 messages, at least 80 ms) ran to its end; both stores came
    # before the next, which started only after the pause (at least 2 x 80 ms).
    assert order[:6] == ["apply"] * 4 + ["store-1", "store-2"]
    assert order.count("apply") == 12
    first_transaction = applied_at[3][1] - applied_at[0][0]
    pause = applied_at[4][0] - applied_at[3][1]
    assert pause >= 2 * first_transaction * 0.95
