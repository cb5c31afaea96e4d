"""A background loop that waits on its wake-up event stops when cancelled, even when the
event is set in the same loop pass (node/waiting.py)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from node.waiting import wait_event


async def _wake_up_loop(event: asyncio.Event) -> None:
    while True:
        await wait_event(event, 60)
        event.clear()


async def test_a_cancel_that_meets_the_event_being_set_is_not_lost() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_wake_up_loop(event))
    await asyncio.sleep(0)
    # What a shutdown does while a finishing fetch wakes the loop.
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 5) is True


def test_no_event_is_waited_for_with_wait_for() -> None:
    """Every timed event wait in the project goes through node/waiting.py: an
    ``asyncio.wait_for(<something>.wait(), …)`` anywhere in node/ or inspection/ fails here."""
    root = Path(__file__).resolve().parents[1]
    found = []
    for path in sorted(
        [*root.joinpath("node").rglob("*.py"), *root.joinpath("inspection").rglob("*.py")]
    ):
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(call, ast.Call) or not call.args:
                continue
            name = (
                call.func.attr
                if isinstance(call.func, ast.Attribute)
                else getattr(call.func, "id", "")
            )
            first = call.args[0]
            waits = (
                isinstance(first, ast.Call)
                and isinstance(first.func, ast.Attribute)
                and first.func.attr == "wait"
            )
            if name == "wait_for" and waits:
                found.append(f"{path.relative_to(root)}:{call.lineno}")
    assert found == [], found
