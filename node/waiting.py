"""Waiting for an ``asyncio.Event`` with a time limit.

Python 3.11's ``asyncio.wait_for(event.wait(), t)`` swallows a cancellation that arrives in
the same loop pass as the event being set (it sees the inner wait done and returns its
result): a background loop cancelled at shutdown while another task sets its wake-up event
then runs on, and the shutdown that awaits it hangs. ``asyncio.timeout`` runs the wait in the
caller's own task and never loses a cancellation, so every timed event wait goes through here.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True if it was set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
