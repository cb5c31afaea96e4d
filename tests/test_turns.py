"""node/turns.py: heavy steps take turns with the event loop's I/O, a few per pass."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from node.turns import Turns
from protocol.envelope import new_claims, sign_envelope
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs


def work(seconds: float) -> None:
    """A heavy step: CPU on the loop's thread for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class PassCounter:
    """Counts passes of the running loop: a callback that schedules itself again runs once
    per pass (asyncio runs what was scheduled during a pass in the next one)."""

    def __init__(self) -> None:
        self.passes = 0
        self._stopped = False
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        if not self._stopped:
            self.passes += 1
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


def _noted_when_readable(order: list[str]) -> tuple[socket.socket, Callable[[], None]]:
    """A socket pair whose reading end, once readable, appends "io" to ``order`` (the loop's
    I/O callback); returns the writing end and what closes both."""
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)

    def readable() -> None:
        left.recv(16)
        order.append("io")
        loop.remove_reader(left.fileno())

    loop.add_reader(left.fileno(), readable)

    def close() -> None:
        loop.remove_reader(left.fileno())
        left.close()
        right.close()

    return right, close


@pytest.mark.parametrize("per_pass", [1, 2, 4])
async def test_at_most_per_pass_callers_go_on_in_one_pass_in_arrival_order(
    per_pass: int,
) -> None:
    turns = Turns(per_pass)
    counter = PassCounter()
    granted: list[tuple[int, int]] = []

    async def heavy(n: int) -> None:
        await turns.take()
        granted.append((n, counter.passes))

    await asyncio.gather(*(heavy(n) for n in range(13)))
    counter.stop()

    assert [n for n, _pass in granted] == list(range(13))  # first come, first served
    per = Counter(p for _n, p in granted)
    assert max(per.values()) <= per_pass
    assert len(per) >= -(-13 // per_pass)
    assert turns.waiting == 0


async def test_io_that_arrives_is_handled_between_groups_of_heavy_steps() -> None:
    """Sixteen callers ready at once, each with 2 ms of work: a socket that became readable
    meanwhile is read after at most a pass of heavy steps, not after all sixteen."""
    turns = Turns(2)
    order: list[str] = []
    right, close = _noted_when_readable(order)

    async def heavy(n: int) -> None:
        await turns.take()
        if n == 0:
            right.send(b"x")  # the answer "arrives" while the first caller works
        work(0.002)
        order.append(f"step{n}")

    try:
        await asyncio.gather(*(heavy(n) for n in range(16)))
    finally:
        close()
    assert order.index("io") <= 4, order
    assert sorted(o for o in order if o != "io") == sorted(f"step{n}" for n in range(16))


async def test_without_turns_a_ready_crowd_starves_io() -> None:
    """The problem the turns solve, shown on the same workload: every ready task runs before
    the loop looks at its sockets."""
    order: list[str] = []
    right, close = _noted_when_readable(order)

    async def heavy(n: int) -> None:
        await asyncio.sleep(0)
        if n == 0:
            right.send(b"x")
        work(0.002)
        order.append(f"step{n}")

    try:
        await asyncio.gather(*(heavy(n) for n in range(16)))
        await asyncio.sleep(0.01)
    finally:
        close()
    assert order.index("io") == 16


async def test_a_free_turn_is_taken_without_yielding() -> None:
    turns = Turns(4)
    counter = PassCounter()
    before = counter.passes
    for _ in range(4):
        await turns.take()
    assert counter.passes == before  # four in one pass, no context switch
    await turns.take()  # the fifth waits for the next pass
    assert counter.passes > before
    counter.stop()


async def test_a_cancelled_waiter_gives_up_its_place_and_a_granted_one_its_turn() -> None:
    turns = Turns(1)
    await turns.take()  # this pass's turn is used
    done: list[str] = []

    async def heavy(name: str) -> None:
        await turns.take()
        done.append(name)

    waiting = asyncio.create_task(heavy("cancelled while waiting"))
    granted = asyncio.create_task(heavy("cancelled once granted"))
    last = asyncio.create_task(heavy("last"))
    await asyncio.sleep(0)
    assert turns.waiting == 3
    waiting.cancel()
    # Let the next pass release one turn (to the cancelled waiter's successor, "granted"),
    # then cancel that one before it runs: its turn goes on to "last".
    for _ in range(10):
        if turns.waiting <= 1:
            break
        await asyncio.sleep(0)
    assert turns.waiting == 1  # "granted" has its turn and has not run yet
    granted.cancel()
    await asyncio.gather(waiting, granted, last, return_exceptions=True)
    assert done == ["last"]
    assert turns.waiting == 0


def test_per_pass_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Turns(0)


async def test_a_burst_gets_its_first_receipts_while_later_envelopes_wait_their_turn(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    """The receiver stores and answers the first envelopes of a burst before it has verified
    the last ones (it used to verify all of them first, then store them in one commit)."""
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    shaoyang, hengyang = [await RunningNode(c).start() for c in configs]
    try:
        identity = shaoyang.fed.identity
        tokens = [
            sign_envelope(
                new_claims(
                    iss="430523",
                    aud="430400",
                    typ="case.progress",
                    xt=f"XT-T{n}",
                    seq=1,
                    body=example_body("case.progress")[0],
                    now=time.time(),
                ),
                identity.private_key,
                identity.kid,
            ).encode("ascii")
            for n in range(48)
        ]
        inbound = hengyang.fed.inbound
        turns = hengyang.fed.turns
        # Watch the group commits (and call through): how many envelopes each stores, and
        # how many were still waiting for their turn when it began. Counted in passes of the
        # loop, not in time, so the answer does not depend on the database's speed.
        commits: list[tuple[int, int]] = []
        commit = inbound._commit

        async def watched(batch):  # type: ignore[no-untyped-def]
            commits.append((len(batch), turns.waiting))
            return await commit(batch)

        inbound._commit = watched  # type: ignore[method-assign]
        receipts = await asyncio.gather(*(inbound.receive(t, remote="127.0.0.1") for t in tokens))
        assert len(set(receipts)) == 48
        assert sum(size for size, _waiting in commits) == 48
        first_size, waiting_then = commits[0]
        assert first_size < 48 and waiting_then > 0, commits
    finally:
        await shaoyang.stop()
        await hengyang.stop()
