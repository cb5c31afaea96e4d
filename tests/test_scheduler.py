"""The delivery scheduler (node/federation/scheduler.py): a partner with nothing due costs
nothing, and each wake-up reaches its partner's sender.

A node partnered with one real node and many unreachable regions (real keys, URLs to closed
local ports). Statements are counted where they reach the database (SQLAlchemy's
``before_cursor_execute``, and on SQLite the writer connection's trace callback, which also
sees the hot paths that bypass SQLAlchemy). Where a test must prove which wake-up did the
work, the fallback scan is taken out of the picture with a ``poll_interval`` of an hour (it
then runs once, at start).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text

from node.config import NodeConfig
from node.federation.models import outbox
from node.provisioning import link_all
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory, using_postgres
from tests.support.nodes import OfflineSender, RunningNode, federation_toml, make_configs
from tests.support.partners import pad_partners_file
from tests.support.waiting import wait_until

BODY = example_body("case.progress")[0]
SENDER = ("430523", "邵阳县")
PARTNER = ("430400", "衡阳市")
#: Unreachable partner regions configured besides the real one.
MANY = 300
#: The fallback scan out of the picture: it runs once, when the node starts.
NO_FALLBACK = 3600.0


async def make_pair(
    tmp: Path, databases: DatabaseFactory, sender_settings: dict[str, float]
) -> list[NodeConfig]:
    [sender] = await make_configs(
        tmp, databases, [SENDER], link=False, federation=federation_toml(**sender_settings)
    )
    [partner] = await make_configs(tmp, databases, [PARTNER], link=False)
    configs = [sender, partner]
    await link_all(configs)
    # The real partner and MANY unreachable ones.
    pad_partners_file(sender.partners_file, 1 + MANY)
    return configs


class StatementLog:
    """Every SQL statement of a node that reaches its database, as text."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    async def attach(self, node: RunningNode) -> None:
        db = node.db
        engines = [db._reader] if db.is_sqlite else [db.engine]
        for engine in engines:
            event.listen(engine.sync_engine, "before_cursor_execute", self._seen)
        if db.is_sqlite:
            # The one writer connection: also runs run_write's raw sqlite3 transactions.
            async with db.engine.connect() as conn:
                fairy = await conn.get_raw_connection()
                driver: Any = fairy.driver_connection
                raw: sqlite3.Connection = driver._conn
                await driver._execute(lambda: raw.set_trace_callback(self.statements.append))

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def about_outbox(self) -> list[str]:
        return [s for s in self.statements if "outbox" in s.lower()]


@pytest.fixture
async def nodes(
    tmp_path: Path, databases: DatabaseFactory
) -> AsyncIterator[Callable[[dict[str, float]], Awaitable[list[RunningNode]]]]:
    made: list[RunningNode] = []

    async def make(sender_settings: dict[str, float]) -> list[RunningNode]:
        configs = await make_pair(tmp_path, databases, sender_settings)
        made.extend(RunningNode(c) for c in configs)
        return list(made)

    yield make
    for node in made:
        await node.stop()


async def outbox_rows(node: RunningNode) -> list[Any]:
    async with node.db.read() as conn:
        return list((await conn.execute(select(outbox).order_by(outbox.c.id))).all())


def senders_started(node: RunningNode) -> dict[str, int]:
    return {r: q.runs for r, q in node.fed.delivery.queues.items() if q.runs}


async def all_delivered(node: RunningNode) -> bool:
    rows = await outbox_rows(node)
    return bool(rows) and all(r.delivered_at for r in rows)


async def send_from_another_process(sender: RunningNode, xt: str) -> None:
    """One envelope to PARTNER queued by another process of the sender's region (its own
    engine, its own outbox; no in-process wake)."""
    other = await OfflineSender(sender.config).open()
    try:
        async with other.db.write() as conn:
            await other.outbox.enqueue(
                conn, partner=PARTNER[0], typ="case.progress", xt=xt, body=BODY
            )
    finally:
        await other.close()


async def test_idle_partners_cost_no_query_and_a_commit_wakes_only_its_partner(
    nodes: Callable[[dict[str, float]], Awaitable[list[RunningNode]]],
) -> None:
    sender, partner = await nodes({"poll_interval": 0.05})
    await partner.start()
    await sender.start()
    delivery = sender.fed.delivery
    assert len(delivery.queues) == MANY + 1
    log = StatementLog()
    await log.attach(sender)
    scans = delivery.scheduler.scans

    async def intervals_passed() -> bool:
        return delivery.scheduler.scans >= scans + 6

    await wait_until(intervals_passed)
    # Six fallback intervals with nothing due: the scans' one statement each, nothing per
    # partner, and no sender was ever started.
    about_outbox = log.about_outbox()
    done = delivery.scheduler.scans - scans
    # (A scan whose query ran just before the log was attached counts after it: done - 1.)
    assert done - 1 <= len(about_outbox) <= done + 2, about_outbox[:5]
    assert all("group by" in s.lower() for s in about_outbox), about_outbox[:5]
    assert senders_started(sender) == {}
    assert delivery.settles == {}
    assert not any(q.running for q in delivery.queues.values())

    # A commit for one unreachable partner starts its sender, and only its.
    lost = "110007"
    await sender.send(lost, "case.progress", "XT-LOST", BODY)

    async def tried() -> bool:
        return any(r.attempts >= 1 for r in await outbox_rows(sender))

    await wait_until(tried)
    assert set(senders_started(sender)) == {lost}
    assert set(delivery.settles) == {lost}

    # A commit for the live partner: delivered, and still no other sender ever ran.
    queued = await sender.send(PARTNER[0], "case.progress", "XT-LIVE", BODY)

    async def delivered() -> bool:
        rows = {r.id: r for r in await outbox_rows(sender)}
        return rows[queued.id].delivered_at is not None

    await wait_until(delivered)
    assert set(senders_started(sender)) == {lost, PARTNER[0]}
    assert set(delivery.settles) == {lost, PARTNER[0]}


async def test_a_partner_whose_backoff_ends_is_retried_by_its_due_time(
    nodes: Callable[[dict[str, float]], Awaitable[list[RunningNode]]],
) -> None:
    sender, partner = await nodes(
        {"initial_backoff": 0.05, "max_backoff": 0.5, "poll_interval": NO_FALLBACK}
    )
    await sender.start()
    delivery = sender.fed.delivery
    scheduler = delivery.scheduler
    await wait_until(lambda: _true(scheduler.scans >= 1))
    for _ in range(3):
        await sender.send(PARTNER[0], "case.progress", "XT-DUE", BODY)

    async def retried() -> bool:
        return all(r.attempts >= 3 for r in await outbox_rows(sender))

    await wait_until(retried)
    queue = delivery.queues[PARTNER[0]]
    # Retried three times and more without a fallback scan: each retry was the scheduler
    # waking the sender when its backoff (or its rows' next attempt) fell due.
    assert scheduler.scans == 1
    assert queue.failures >= 2
    assert scheduler.fired >= 2
    assert queue.runs >= 3
    assert set(senders_started(sender)) == {PARTNER[0]}

    # The partner comes up and says nothing: the next due time delivers everything, in order.
    await partner.start()

    await wait_until(lambda: all_delivered(sender))
    assert scheduler.scans == 1
    assert [r.seq for r in await outbox_rows(sender)] == [1, 2, 3]


async def test_inbound_traffic_from_a_partner_wakes_its_sender(
    nodes: Callable[[dict[str, float]], Awaitable[list[RunningNode]]],
) -> None:
    # A backoff of an hour: only hearing from the partner can bring the sender back soon.
    sender, partner = await nodes(
        {"initial_backoff": 3600.0, "max_backoff": 3600.0, "poll_interval": NO_FALLBACK}
    )
    await sender.start()
    delivery = sender.fed.delivery
    queue = delivery.queues[PARTNER[0]]
    await sender.send(PARTNER[0], "case.progress", "XT-HEAR", BODY)

    async def backing_off() -> bool:
        return queue.failures == 1 and not queue.running

    await wait_until(backing_off)
    assert queue.backoff_until - time.monotonic() > 600
    assert queue.runs == 1
    fired = delivery.scheduler.fired

    await partner.start()
    await partner.send(SENDER[0], "case.progress", "XT-HEAR-BACK", BODY)

    await wait_until(lambda: all_delivered(sender))
    assert queue.failures == 0
    # Woken by the partner's envelope (and the rows it made due), not by a due time or a scan.
    assert delivery.scheduler.fired == fired
    assert delivery.scheduler.scans == 1
    assert queue.runs >= 2


@pytest.mark.skipif(not using_postgres(), reason="LISTEN/NOTIFY: PostgreSQL only")
async def test_a_commit_in_another_process_wakes_the_sender_by_notify(
    nodes: Callable[[dict[str, float]], Awaitable[list[RunningNode]]],
) -> None:
    sender, partner = await nodes({"poll_interval": NO_FALLBACK})
    await partner.start()
    await sender.start()
    scheduler = sender.fed.delivery.scheduler
    await wait_until(lambda: _true(scheduler.scans >= 1))
    await send_from_another_process(sender, "XT-NOTIFY")
    await wait_until(lambda: all_delivered(sender))
    assert scheduler.notified >= 1
    assert scheduler.scans == 1


@pytest.mark.skipif(not using_postgres(), reason="LISTEN/NOTIFY: PostgreSQL only")
async def test_a_lost_listening_connection_listens_again_and_scans(
    nodes: Callable[[dict[str, float]], Awaitable[list[RunningNode]]],
) -> None:
    sender, partner = await nodes({"poll_interval": NO_FALLBACK})
    await partner.start()
    await sender.start()
    scheduler = sender.fed.delivery.scheduler
    await wait_until(lambda: _true(scheduler.scans >= 1 and scheduler.listens == 1))
    # The database drops the listening backend (a restart, an admin's pg_terminate_backend).
    async with sender.db.read() as conn:
        killed = (
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
            )
        ).all()
    assert len(killed) == 1
    # It listens again at once (no fallback interval to wait for) and scans once for what
    # was notified while nobody listened.
    await wait_until(lambda: _true(scheduler.listens == 2 and scheduler.scans == 2))
    await send_from_another_process(sender, "XT-RELISTEN")
    await wait_until(lambda: all_delivered(sender))
    assert scheduler.notified >= 1
    assert scheduler.scans == 2


async def _true(value: bool) -> bool:
    return value
