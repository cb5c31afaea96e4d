from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, interval: float = 0.05
) -> None:
    """Poll ``check`` until it is true; fail the test with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
