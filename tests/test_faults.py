"""Faults with real node processes on real sockets, no mocks: a partner down for a while, a
receiver or a sender killed with SIGKILL in the middle of a burst, a receiver killed while blobs
are on their way. After each, everything committed to the outbox is delivered, every receipt
the sender holds is backed by an envelope the receiver stored, and every message is applied
once, in order.

The nodes run as `python -m node.cli run` children; the test process fills the sender's outbox
through its own database handle (as the sender's case domain would) and reads both databases
directly."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, func, select

from node.config import NodeConfig
from node.federation.models import (
    INBOUND_TOKEN,
    OUTBOX_TOKEN,
    inbound_cursors,
    inbound_envelopes,
    inbound_messages,
    outbox,
)
from node.federation.partners import load_partners
from node.provisioning import init_node, link_all
from node.storage.blobs import FolderBlobStore
from node.storage.database import Database
from node.storage.sealing import load_sealer
from protocol.envelope import parse_envelope
from protocol.keys import KeySet
from protocol.messages import example_body
from protocol.receipt import verify_receipt
from tests.support.databases import DatabaseFactory
from tests.support.nodes import NodeProcess, OfflineSender, free_port
from tests.support.waiting import wait_until

SENDER = ("430523", "邵阳县")
RECEIVER = ("430400", "衡阳市")

#: The FAST_FEDERATION settings of tests.support.nodes, as a dict to override per test.
FAST = {"initial_backoff": 0.05, "max_backoff": 1.0, "poll_interval": 0.05}


# -- message bodies -------------------------------------------------------------------------


def example(typ: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A valid body of ``typ`` and the blobs it names (the protocol's own example)."""
    return example_body(typ)


def _replace_digests(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _replace_digests(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_digests(v, mapping) for v in value]
    if isinstance(value, str) and value in mapping:
        return mapping[value]
    return value


def body_with_blobs(
    typ: str, stored: list[tuple[str, int]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The example body of ``typ`` pointed at blobs we hold: each blob the example names is
    swapped, in the body and in ``blobs``, for one of ``stored`` (sha256, size)."""
    body, blobs = example(typ)
    assert blobs and len(stored) == len(blobs), "store one blob per blob the example names"
    mapping = {b["sha256"]: sha for b, (sha, _size) in zip(blobs, stored, strict=True)}
    new_blobs = [
        dict(b, sha256=sha, size=size) for b, (sha, size) in zip(blobs, stored, strict=True)
    ]
    return _replace_digests(body, mapping), new_blobs


# -- nodes and their databases --------------------------------------------------------------


def federation_toml(**settings: float | int) -> str:
    values = {**FAST, **settings}
    return "[federation]\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())


@dataclass
class Node:
    config: NodeConfig
    proc: NodeProcess
    db: Database
    log_dir: Path
    #: When the pair was made (monotonic): progress lines say how long each step took.
    born: float = field(default_factory=time.monotonic)

    @property
    def region(self) -> str:
        return self.config.region

    def note(self, what: str) -> None:
        print(f"[{time.monotonic() - self.born:6.1f} s] {what}")

    async def start(self) -> None:
        await self.proc.start(timeout=60)
        self.note(f"{self.region} up (run {self.proc.starts})")

    def kill(self) -> None:
        if self.proc.proc is not None and self.proc.proc.poll() is None:
            self.proc.kill()
            self.note(f"{self.region} killed")

    async def rows(self, *columns: Any, where: Any = None) -> list[Any]:
        statement = select(*columns) if columns else select(outbox)
        if where is not None:
            statement = statement.where(where)
        async with self.db.read() as conn:
            return list((await conn.execute(statement)).all())

    async def count(self, table: Any, where: Any) -> int:
        async with self.db.read() as conn:
            statement = select(func.count()).select_from(table).where(where)
            return int((await conn.execute(statement)).scalar_one())

    def log_errors(self) -> list[dict[str, Any]]:
        """Error-level entries of every run of this node so far (JSON log lines)."""
        found = []
        for path in sorted(self.log_dir.glob(f"{self.region}-*.log")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                    found.append({"file": path.name, **entry})
        return found


@dataclass
class Pair:
    """A sender and a receiver, partnered, not running yet."""

    sender: Node
    receiver: Node
    log_dir: Path
    #: The cases (xt) of what the test enqueued from sender to receiver. Other traffic (the
    #: case.error a node answers a message about an unknown case with) is left out.
    cases: set[str] = field(default_factory=set)
    _senders: list[OfflineSender] = field(default_factory=list)

    async def outbox_writer(self, node: Node) -> OfflineSender:
        writer = await OfflineSender(node.config).open()
        self._senders.append(writer)
        return writer

    async def enqueue(
        self,
        node: Node,
        partner: str,
        plan: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]],
        *,
        per_transaction: int = 250,
    ) -> None:
        """Commit ``plan`` ((typ, xt, body, blobs) in order) to ``node``'s outbox."""
        writer = await self.outbox_writer(node)
        if node is self.sender and partner == self.receiver.region:
            self.cases.update(xt for _typ, xt, _body, _blobs in plan)
        for start in range(0, len(plan), per_transaction):
            async with writer.db.write() as conn:
                for typ, xt, body, blobs in plan[start : start + per_transaction]:
                    await writer.outbox.enqueue(
                        conn, partner=partner, typ=typ, xt=xt, body=body, blobs=blobs or None
                    )
        node.note(f"{len(plan)} envelopes for {partner} committed to the outbox")

    def ours(self, table: Any) -> Any:
        """Rows of ``table`` about the test's cases from sender to receiver."""
        if "partner" in table.c:
            side = table.c.partner == self.receiver.region
        else:
            side = table.c.iss == self.sender.region
        return and_(side, table.c.xt.in_(sorted(self.cases)))

    async def delivered_count(self) -> int:
        delivered = outbox.c.delivered_at.is_not(None)
        return await self.sender.count(outbox, and_(self.ours(outbox), delivered))

    async def in_flight(self) -> int:
        """Envelopes on the wire: claimed by a delivery round whose results are not recorded."""
        claimed = and_(outbox.c.delivered_at.is_(None), outbox.c.claimed_until.is_not(None))
        return await self.sender.count(outbox, and_(self.ours(outbox), claimed))

    async def mid_burst(self) -> bool:
        """Some delivered and a window on the wire: the moment to kill a node. (Right after
        the delivered count moves, the sender has just recorded a round and nothing is in
        flight: a kill then would test little.)"""
        return await self.delivered_count() >= 150 and await self.in_flight() > 0

    def receiver_keys(self) -> KeySet:
        """The receiver's public keys, as the sender's partners.toml has them."""
        partner = load_partners(self.sender.config.partners_file)[self.receiver.region]
        return KeySet(list(partner.keys))

    def describe(self) -> str:
        errors = self.sender.log_errors() + self.receiver.log_errors()
        lines = [f"node logs in {self.log_dir}"]
        for entry in errors[:20]:
            lines.append(f"  {entry['file']}: {entry.get('msg')} {entry.get('exc', '')[-300:]}")
        return "\n".join(lines)


@pytest.fixture
async def federation(
    tmp_path: Path, databases: DatabaseFactory
) -> AsyncIterator[Callable[..., Awaitable[Pair]]]:
    """Makes a partnered sender and receiver (each with its own [federation] settings);
    kills their processes and closes every database handle at the end, whatever happened."""
    made: list[Pair] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir()

    async def make(
        sender_settings: dict[str, float] | None = None,
        receiver_settings: dict[str, float] | None = None,
    ) -> Pair:
        born = time.monotonic()
        configs = []
        for (region, name), settings in (
            (SENDER, sender_settings),
            (RECEIVER, receiver_settings),
        ):
            configs.append(
                await init_node(
                    tmp_path / region,
                    region=region,
                    name=name,
                    port=free_port(),
                    database_url=await databases.new_url(region),
                    extra_toml=federation_toml(**(settings or {})),
                )
            )
        await link_all(configs)
        sender, receiver = (
            Node(c, NodeProcess(c, log_dir), Database(c.database_url), log_dir, born)
            for c in configs
        )
        made.append(Pair(sender, receiver, log_dir))
        print(f"node logs: {log_dir}")
        return made[-1]

    try:
        yield make
    finally:
        for fed in made:
            for node in (fed.sender, fed.receiver):
                node.kill()
            for writer in fed._senders:
                await writer.close()
            for node in (fed.sender, fed.receiver):
                await node.db.dispose()


# -- what must hold after any fault ---------------------------------------------------------


def burst(cases: int, per_case: int, prefix: str) -> list[tuple[str, str, dict[str, Any], list]]:
    """``cases * per_case`` progress messages, the cases interleaved (seq 1 of every case,
    then seq 2 ...), as a busy region's outbox would hold them."""
    body, blobs = example("case.progress")
    return [
        ("case.progress", f"{prefix}-{case:03d}", body, blobs)
        for _seq in range(per_case)
        for case in range(cases)
    ]


async def all_delivered(fed: Pair, total: int, timeout: float) -> None:
    async def done() -> bool:
        return await fed.delivered_count() == total

    try:
        await wait_until(done, timeout=timeout, interval=0.1)
    except AssertionError as exc:
        count = await fed.delivered_count()
        raise AssertionError(
            f"{count}/{total} delivered after {timeout} s\n{fed.describe()}"
        ) from exc
    fed.sender.note(f"all {total} delivered")


async def all_applied(fed: Pair, total: int, timeout: float) -> None:
    async def done() -> bool:
        applied = inbound_messages.c.applied_at.is_not(None)
        return (
            await fed.receiver.count(inbound_messages, and_(fed.ours(inbound_messages), applied))
            >= total
        )

    try:
        await wait_until(done, timeout=timeout, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"not all {total} applied\n{fed.describe()}") from exc
    fed.receiver.note(f"all {total} applied")


async def check_exactly_once(
    fed: Pair, expected: Counter[str], *, apply_timeout: float = 120
) -> None:
    """Every outbox row delivered with a receipt that verifies; the receiver holds each jti
    once with that same receipt, no duplicate slot, each (iss, xt, seq) once, all applied,
    and each case's cursor just past its last message."""
    sender, receiver = fed.sender, fed.receiver
    total = sum(expected.values())
    rows = await sender.rows(where=fed.ours(outbox))
    assert len(rows) == total
    assert all(r.dead_at is None for r in rows), [r.last_error for r in rows if r.dead_at][:3]
    assert all(r.delivered_at is not None for r in rows)
    keys = fed.receiver_keys()
    for row in rows:
        receipt = verify_receipt(
            row.receipt,
            keys,
            sender=sender.region,
            receiver=receiver.region,
            ref=row.jti,
            digest=row.digest,
        )
        assert receipt.ref == row.jti
    sent = {r.jti: r for r in rows}
    assert Counter(r.xt for r in rows) == expected
    assert {(r.xt, r.seq) for r in rows} == {
        (xt, seq) for xt, n in expected.items() for seq in range(1, n + 1)
    }

    stored = await receiver.rows(
        inbound_envelopes.c.jti,
        inbound_envelopes.c.iss,
        inbound_envelopes.c.digest,
        inbound_envelopes.c.receipt,
        inbound_envelopes.c.duplicate,
        where=fed.ours(inbound_envelopes),
    )
    assert len(stored) == total
    assert {s.jti for s in stored} == set(sent)
    assert not [s.jti for s in stored if s.duplicate]
    for s in stored:
        assert s.digest == sent[s.jti].digest
        # The receipt the sender holds is the one the receiver gave (and gives again).
        assert s.receipt == sent[s.jti].receipt

    await all_applied(fed, total, timeout=apply_timeout)
    applied = await receiver.rows(
        inbound_messages.c.xt,
        inbound_messages.c.seq,
        inbound_messages.c.jti,
        inbound_messages.c.applied_at,
        inbound_messages.c.outcome,
        where=fed.ours(inbound_messages),
    )
    assert len(applied) == total
    assert {(a.xt, a.seq): a.jti for a in applied} == {(r.xt, r.seq): r.jti for r in rows}
    assert all(a.applied_at is not None and a.outcome for a in applied)
    # Applied in seq order per case: a message is applied only after the one before it.
    by_case: dict[str, list[Any]] = {}
    for a in applied:
        by_case.setdefault(a.xt, []).append(a)
    for items in by_case.values():
        items.sort(key=lambda a: a.seq)
        times = [a.applied_at for a in items]
        assert times == sorted(times)
    cursors = dict(
        (c.xt, c.next_seq)
        for c in await receiver.rows(
            inbound_cursors.c.xt,
            inbound_cursors.c.next_seq,
            where=fed.ours(inbound_cursors),
        )
    )
    assert cursors == {xt: n + 1 for xt, n in expected.items()}
    # Whatever applying a message sends back (a refusal answers with one case.error naming
    # it), it sends once per message: never twice for one envelope.
    answers = await receiver.rows(
        outbox.c.typ, outbox.c.token, where=outbox.c.partner == sender.region
    )
    sealer = load_sealer(receiver.config.dir)
    refs = Counter(
        parse_envelope(sealer.open(a.token, OUTBOX_TOKEN)).claims["body"].get("ref")
        for a in answers
        if a.typ == "case.error"
    )
    assert not [ref for ref, n in refs.items() if n > 1]


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_partner_down_for_a_while_then_back_gets_everything_at_once(federation) -> None:
    # A real backoff: 1 s doubling towards a cap of five minutes, as in production.
    fed = await federation(sender_settings={"initial_backoff": 1.0, "max_backoff": 300.0})
    plan = burst(cases=20, per_case=15, prefix="XT-DOWN")
    await fed.enqueue(fed.sender, fed.receiver.region, plan)
    # The partner, back, has something of its own to say: that is how the sender hears it is
    # back (docs/architecture.md: the backoff resets at once when anything arrives from that partner).
    await fed.enqueue(fed.receiver, fed.sender.region, burst(cases=1, per_case=1, prefix="XT-HI"))
    await fed.sender.start()

    # Wait out the outage until the sender has failed at least FAILED rounds. A round (what
    # was on the wire when a send failed; nothing more is claimed until the backoff ends)
    # tries at most a window of rows, so sum(attempts) >= window * FAILED means FAILED rounds
    # or more; the sender's own backoff is then at least initial * 2**(FAILED-1) * 0.5 (the
    # jitter's low end) from the last of them.
    failed = 5
    window = fed.sender.config.federation.window
    quiet = fed.sender.config.federation.initial_backoff * 2 ** (failed - 1) * 0.5
    before = time.monotonic()
    deadline = before + 30
    while True:
        polled = time.monotonic()
        rows = await fed.sender.rows(
            outbox.c.attempts, outbox.c.last_error, outbox.c.delivered_at, where=fed.ours(outbox)
        )
        assert not [r for r in rows if r.delivered_at is not None]
        if sum(r.attempts for r in rows) >= window * failed:
            break
        assert polled < deadline, "the sender did not retry as expected"
        before = polled  # this read did not see the FAILED-th round: it ended later
        await asyncio.sleep(0.05)
    # The FAILED-th failed round ended after `before`: without a reset, nothing goes out
    # before `before + quiet`.
    own_retry_at = before + quiet
    attempted = [r for r in rows if r.attempts > 0]
    assert attempted and all(r.last_error for r in attempted)

    await fed.receiver.start()
    up = time.monotonic()
    assert own_retry_at - up > 1, "the receiver took too long to start to tell anything"

    async def moving() -> bool:
        return await fed.delivered_count() > 0

    try:
        await wait_until(moving, timeout=own_retry_at - time.monotonic())
    except AssertionError as exc:
        raise AssertionError(
            "nothing delivered before the sender's own backoff ran out: hearing from the "
            f"partner did not reset it\n{fed.describe()}"
        ) from exc
    first = time.monotonic()
    # The whole backlog then goes at once, not at the pace of a backoff capped at 5 minutes.
    await all_delivered(fed, len(plan), timeout=30)
    print(
        f"first delivery {first - up:.1f} s after the partner was up (the sender's own backoff "
        f"would have waited {own_retry_at - up:.1f} s); all {len(plan)} after "
        f"{time.monotonic() - up:.1f} s"
    )
    await check_exactly_once(fed, Counter(xt for _t, xt, _b, _bl in plan))


@pytest.mark.slow
async def test_receiver_killed_mid_burst_keeps_every_envelope_it_gave_a_receipt_for(
    federation,
) -> None:
    fed = await federation()
    plan = burst(cases=40, per_case=30, prefix="XT-RK")
    await fed.enqueue(fed.sender, fed.receiver.region, plan)
    await fed.receiver.start()
    await fed.sender.start()

    await wait_until(fed.mid_burst, timeout=30, interval=0.01)
    fed.receiver.kill()
    receipts = {
        r.jti: r.receipt
        for r in await fed.sender.rows(
            outbox.c.jti,
            outbox.c.receipt,
            where=and_(fed.ours(outbox), outbox.c.receipt.is_not(None)),
        )
    }
    assert 0 < len(receipts) < len(plan), "kill came too late: the burst was over"
    fed.sender.note(f"receiver killed; the sender holds {len(receipts)} receipts")

    await fed.receiver.start()
    stored = {
        r.jti: r.receipt
        for r in await fed.receiver.rows(inbound_envelopes.c.jti, inbound_envelopes.c.receipt)
    }
    lost = set(receipts) - set(stored)
    assert not lost, f"{len(lost)} envelopes with a receipt are gone from the receiver"
    assert all(stored[jti] == receipt for jti, receipt in receipts.items())

    await all_delivered(fed, len(plan), timeout=90)
    await check_exactly_once(fed, Counter(xt for _t, xt, _b, _bl in plan))


@pytest.mark.slow
async def test_sender_killed_mid_burst_delivers_everything_once_after_restart(
    federation,
) -> None:
    # Rows the killed process had claimed stay its own until their lease runs out (a running
    # worker renews it; at most 10 s, or claim_seconds if shorter): shortened here to keep the
    # test quick.
    fed = await federation(sender_settings={"claim_seconds": 3.0})
    plan = burst(cases=40, per_case=30, prefix="XT-SK")
    await fed.enqueue(fed.sender, fed.receiver.region, plan)
    await fed.receiver.start()
    await fed.sender.start()

    await wait_until(fed.mid_burst, timeout=30, interval=0.01)
    fed.sender.kill()
    # Rows the dead process claimed, and envelopes the receiver stored whose receipts the
    # sender never recorded: both must go out again, and get the same receipts.
    claimed = await fed.in_flight()
    stored = await fed.receiver.count(inbound_envelopes, fed.ours(inbound_envelopes))
    fed.sender.note(
        f"sender killed with {await fed.delivered_count()} delivered and {claimed} claimed; "
        f"the receiver holds {stored}"
    )
    before = {
        r.jti: (r.delivered_at, r.receipt)
        for r in await fed.sender.rows(
            outbox.c.jti,
            outbox.c.delivered_at,
            outbox.c.receipt,
            where=and_(fed.ours(outbox), outbox.c.delivered_at.is_not(None)),
        )
    }
    assert 0 < len(before) < len(plan), "kill came too late: the burst was over"
    assert len(await fed.sender.rows(outbox.c.id, where=fed.ours(outbox))) == len(plan)

    await fed.sender.start()
    await all_delivered(fed, len(plan), timeout=90)
    after = {
        r.jti: (r.delivered_at, r.receipt)
        for r in await fed.sender.rows(outbox.c.jti, outbox.c.delivered_at, outbox.c.receipt)
    }
    # What was recorded as delivered before the crash stays as it was: not sent again.
    assert {jti: after[jti] for jti in before} == before
    await check_exactly_once(fed, Counter(xt for _t, xt, _b, _bl in plan))


@pytest.mark.slow
async def test_receiver_restarted_while_envelopes_with_blobs_wait_gets_every_blob(
    federation,
) -> None:
    fed = await federation()
    store = FolderBlobStore(fed.sender.config.blob_dir)
    _body, example_blobs = example("case.supplemented")
    per_envelope = len(example_blobs)
    plan: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]] = []
    digests: dict[str, int] = {}
    progress, progress_blobs = example("case.progress")
    for case in range(6):
        xt = f"XT-BLOB-{case}"
        for _ in range(10):
            plan.append(("case.progress", xt, progress, progress_blobs))
        stored = []
        for _ in range(per_envelope):
            data = os.urandom(1_500_000 + case * 100_000)
            sha = await store.put_bytes(data)
            stored.append((sha, len(data)))
            digests[sha] = len(data)
        body, blobs = body_with_blobs("case.supplemented", stored)
        plan.append(("case.supplemented", xt, body, blobs))
        for _ in range(5):
            plan.append(("case.progress", xt, progress, progress_blobs))
    await fed.enqueue(fed.sender, fed.receiver.region, plan)
    await fed.sender.start()

    # The partner is down: the outbox holds envelopes with blobs, and the sender retries.
    async def failed() -> bool:
        rows = await fed.sender.rows(outbox.c.attempts, outbox.c.last_error)
        return any(r.attempts > 0 and r.last_error for r in rows)

    await wait_until(failed, timeout=20)
    await fed.receiver.start()
    receiver_blobs = FolderBlobStore(fed.receiver.config.blob_dir)

    async def some_blob_arrived() -> bool:
        return any([await receiver_blobs.has(sha) for sha in digests])

    await wait_until(some_blob_arrived, timeout=30, interval=0.02)
    fed.receiver.kill()
    held = sum([await receiver_blobs.has(sha) for sha in digests])
    fed.receiver.note(f"receiver killed holding {held} of {len(digests)} blobs")
    await fed.receiver.start()
    await all_delivered(fed, len(plan), timeout=90)
    # An upload cut by the kill leaves its partial file in blobs/tmp (never a blob).
    parts = list((fed.receiver.config.blob_dir / "tmp").iterdir())
    fed.receiver.note(f"partial uploads left in blobs/tmp: {len(parts)}")

    for sha, size in digests.items():
        path = receiver_blobs.path(sha)
        assert path.stat().st_size == size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    envelopes = await fed.receiver.rows(
        inbound_envelopes.c.token, where=inbound_envelopes.c.typ == "case.supplemented"
    )
    assert len(envelopes) == 6
    sealer = load_sealer(fed.receiver.config.dir)
    named = {
        b["sha256"]
        for e in envelopes
        for b in parse_envelope(sealer.open(e.token, INBOUND_TOKEN)).claims["blobs"]
    }
    assert named == set(digests)
    await check_exactly_once(fed, Counter(xt for _t, xt, _b, _bl in plan))
