"""Taking turns on the event loop: at most a few CPU-heavy steps between two looks at I/O.

asyncio runs every task that is ready before it looks at its sockets and at the results
threads hand back. When a partner's window of 128 envelopes arrives at once, 128 request
tasks are ready together, and each verifies a signature (about 0.4 ms of Python and
cryptography): the loop spends 50 ms in one pass, and meanwhile the group commit's result, the
receipts to write and the next requests all wait. The sender then gets 128 receipts at once
and is as busy as the receiver was idle: the two nodes take turns instead of working side by
side (measured in bench/README.md, "Taking turns").

``Turns.take()`` lets ``per_pass`` callers through per pass of the loop; the others wait for a
later pass, released by a timer callback. asyncio runs due timers after it has collected the
I/O callbacks of that pass, so between two groups of heavy steps the loop always writes what
is ready to go and reads what has arrived. A caller that finds a free turn and nobody waiting
goes on at once, without a context switch.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Turns:
    """At most ``per_pass`` heavy steps per pass of the running event loop."""

    def __init__(self, per_pass: int) -> None:
        if per_pass < 1:
            raise ValueError("per_pass must be at least 1")
        self._per_pass = per_pass
        self._left = per_pass
        self._waiting: deque[asyncio.Future[None]] = deque()
        #: A release is scheduled for the next pass (turns are being counted in this one).
        self._scheduled = False

    @property
    def waiting(self) -> int:
        """Callers waiting for a turn now."""
        return len(self._waiting)

    async def take(self) -> None:
        """Return when this caller may do its heavy step (at once if a turn is free)."""
        if self._left > 0 and not self._waiting:
            self._left -= 1
            self._schedule()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Given a turn and cancelled before using it: pass the turn on.
                self._left += 1
                self._release()
            raise

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            # A timer, not call_soon: due timers run after the pass has collected its I/O.
            asyncio.get_running_loop().call_later(0, self._next_pass)

    def _next_pass(self) -> None:
        self._scheduled = False
        self._left = self._per_pass
        self._release()
        if self._waiting or self._left < self._per_pass:
            self._schedule()

    def _release(self) -> None:
        while self._left > 0 and self._waiting:
            future = self._waiting.popleft()
            if future.cancelled():
                continue
            self._left -= 1
            future.set_result(None)
