"""`tongban run`'s start-up: the cyclic garbage collector is off while the node is built and
on again, with what start-up made frozen and a young generation of 10,000 objects, once the
app has started."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

from aiohttp import web

from node.cli import YOUNG_COLLECTION_EVERY, collect_garbage_from_now_on


async def test_the_collector_is_on_again_after_the_cleanup_contexts_started() -> None:
    seen: list[bool] = []

    async def context(_app: web.Application) -> AsyncIterator[None]:
        seen.append(gc.isenabled())  # the node's own start-up runs with it off
        yield

    app = web.Application()
    app.cleanup_ctx.append(context)
    app.on_startup.append(collect_garbage_from_now_on)
    was_enabled = gc.isenabled()
    threshold = gc.get_threshold()
    gc.disable()
    runner = web.AppRunner(app)
    try:
        await runner.setup()
        assert seen == [False]
        assert gc.isenabled() and gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *threshold[1:])
        # Garbage in cycles is still collected on its own, once more than that many objects
        # wait (twice as many made here, whatever the count was).
        before = gc.get_stats()[0]["collections"]
        for _ in range(2 * YOUNG_COLLECTION_EVERY):
            cycle: list[object] = []
            cycle.append(cycle)
        assert gc.get_stats()[0]["collections"] > before
    finally:
        await runner.cleanup()
        gc.unfreeze()
        gc.set_threshold(*threshold)
        if was_enabled:
            gc.enable()
        else:
            gc.disable()
