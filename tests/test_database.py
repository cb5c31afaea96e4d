"""The write path's priorities on SQLite, where every write needs the one writer connection:
an inbound store (a partner waits for its receipt) is urgent, and the applier pauses for it;
any write that is not background work ends the applier's transaction at its next breath; the
applier lets the event loop run every few messages of a transaction."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import event
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
    monkeypatch.setattr(applier_module, "PER_TRANSACTION", {"sqlite": 4})
    monkeypatch.setattr(applier_module, "MIN_PER_TRANSACTION", 4)
    db = await _database(databases)
    await _store_messages(db, 12)

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


def _count_commits(db: Database) -> list[int]:
    """A list that grows by one at each commit of a SQLAlchemy transaction on the writer."""
    commits: list[int] = []
    event.listen(db.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    return commits


async def _store_messages(db: Database, count: int) -> None:
    key = generate_private_key()
    now = time.time()
    stored = [
        stored_inbound(
            sign_envelope(
                new_claims(
                    iss=SENDER,
                    aud=RECEIVER,
                    typ="case.progress",
                    xt=f"XT-{n:02d}",
                    seq=1,
                    body=example_body("case.progress")[0],
                    now=now,
                ),
                key,
                "kid-1",
            ),
            received_at=now + n,
        )
        for n in range(count)
    ]
    async with db.write() as conn:
        await insert_inbound(conn, stored)


@pytest.mark.skipif(using_postgres(), reason="the one-writer contention is SQLite's")
@pytest.mark.parametrize(
    ("background", "writes_after"),
    [(False, applier_module.BREATHE_EVERY), (True, 24)],
    ids=["a-clerks-write-ends-it", "background-work-waits"],
)
async def test_a_waiting_write_ends_the_applier_transaction_unless_it_is_background_work(
    databases: DatabaseFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    background: bool,
    writes_after: int,
) -> None:
    """A write that asks for the writer while the applier holds it goes in at the applier's
    next breath (after ``MIN_PER_TRANSACTION``), not at the end of a long transaction; the
    delivery's bookkeeping (background) lets the applier finish."""
    monkeypatch.setattr(applier_module, "MIN_PER_TRANSACTION", 2)
    monkeypatch.setattr(applier_module, "BUDGET", {"sqlite": 30.0})
    db = await _database(databases)
    await _store_messages(db, 24)
    order: list[str] = []
    first_applied = asyncio.Event()
    commits = _count_commits(db)

    async def handler(conn: AsyncConnection, envelope: Envelope) -> None:
        # Never suspends: a real handler's statements run on the loop (inline).
        order.append("apply")
        first_applied.set()

    async def write() -> None:
        await first_applied.wait()

        def fn(_c: sqlite3.Connection) -> None:
            order.append("write")

        await db.run_write(fn, background=background)

    applier = Applier(db, handler, sealer=load_sealer(tmp_path))
    try:
        writing = asyncio.create_task(write())
        assert await applier.apply_ready() == 24
        await writing
    finally:
        await db.dispose()
    assert order == ["apply"] * writes_after + ["write"] + ["apply"] * (24 - writes_after)
    # The applier's transactions: one, or two when the write cut the first short.
    assert len(commits) == (1 if background else 2)


@pytest.mark.skipif(using_postgres(), reason="inline statements run on the loop on SQLite")
async def test_the_applier_lets_the_loop_run_within_a_transaction(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A transaction of many messages whose handlers never suspend still lets other tasks
    (requests, deliveries) run every ``BREATHE_EVERY`` messages."""
    monkeypatch.setattr(applier_module, "BUDGET", {"sqlite": 30.0})
    db = await _database(databases)
    await _store_messages(db, 40)
    order: list[str] = []
    commits = _count_commits(db)

    async def handler(conn: AsyncConnection, envelope: Envelope) -> None:
        order.append("apply")

    async def tick() -> None:
        while True:
            order.append("tick")
            await asyncio.sleep(0)

    applier = Applier(db, handler, sealer=load_sealer(tmp_path))
    ticking = asyncio.create_task(tick())
    try:
        assert await applier.apply_ready() == 40
    finally:
        ticking.cancel()
        await db.dispose()
    assert len(commits) == 1
    runs = "".join("a" if o == "apply" else "t" for o in order).split("t")
    assert max(len(run) for run in runs) == applier_module.BREATHE_EVERY


@pytest.mark.skipif(using_postgres(), reason="the one-writer contention is SQLite's")
async def test_the_applier_does_not_count_its_wait_for_the_writer(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The applier that waited for the writer behind other writes (a burst of inbound stores)
    neither spends its budget on that wait nor pauses for twice it afterwards: the pause is
    twice the time it held the writer. (Counting the wait once paused it for seconds after
    a burst, with everything stored and nothing applied.)"""
    monkeypatch.setattr(applier_module, "MIN_PER_TRANSACTION", 2)
    monkeypatch.setattr(applier_module, "BREATHE_EVERY", 2)
    db = await _database(databases)
    await _store_messages(db, 6)
    waited = 1.0
    release = asyncio.Event()
    holding = asyncio.Event()
    applied_at: list[tuple[float, float]] = []
    commits = _count_commits(db)
    commits_seen: list[int] = []

    async def hold() -> None:
        async with db.write():
            holding.set()
            await release.wait()

    async def handler(conn: AsyncConnection, envelope: Envelope) -> None:
        commits_seen.append(len(commits))
        started = time.monotonic()
        await asyncio.sleep(0.005)
        applied_at.append((started, time.monotonic()))

    def store(_c: sqlite3.Connection) -> None:
        pass

    applier = Applier(db, handler, sealer=load_sealer(tmp_path))
    try:
        holder = asyncio.create_task(hold())
        await holding.wait()
        applying = asyncio.create_task(applier.apply_ready())
        await asyncio.sleep(0.05)  # the applier waits for the writer now ...
        storing = asyncio.create_task(db.run_write(store, urgent=True))  # ... and a store
        await asyncio.sleep(waited)
        release.set()
        await holder
        assert await applying == 6
        await storing
    finally:
        await db.dispose()
    # The first transaction applied its minimum (the store waited), not fewer; the next
    # began after a pause of about twice the first one's length, far less than the wait.
    assert commits_seen[0] == commits_seen[1] < commits_seen[2]
    first_end = applied_at[1][1]
    first_length = first_end - applied_at[0][0]
    pause = applied_at[2][0] - first_end
    assert first_length < waited / 4
    assert pause < waited / 2
