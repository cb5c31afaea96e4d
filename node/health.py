"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` (in node.federation.views) says only that the process answers HTTP: liveness.
``/readyz`` says whether this replica should get traffic: the database answers and is migrated
to the newest schema, and the federation workers (inbound writer, applier, delivery scheduler,
file watcher) are running. It answers 200 ``{"status": "ready", ...}`` or 503
``{"status": "not_ready", "reasons": [...]}`` with stable reason codes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from node.appkeys import FEDERATION
from node.federation.runtime import Federation
from node.storage.migrate import alembic_config

#: How long the database may take to answer the readiness query, seconds.
DB_TIMEOUT = 5.0

_heads: set[str] | None = None


def schema_heads() -> set[str]:
    """The Alembic head revisions this code expects (read once; they never change at run time)."""
    global _heads
    if _heads is None:
        _heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    return _heads


def _workers(fed: Federation) -> list[str]:
    """Reasons the federation workers are not all running (empty when they are)."""
    tasks: dict[str, Any] = {
        "watcher": next(iter(getattr(fed, "_tasks", [])), None),
        "applier": getattr(fed.applier, "_task", None),
        "inbound_writer": getattr(fed.inbound, "_writer", None),
    }
    # Partners' senders run only when something is due; the scheduler always runs.
    tasks.update(fed.delivery.workers())
    reasons = []
    for name, task in tasks.items():
        if not isinstance(task, asyncio.Task) or task.done():
            reasons.append(f"worker_stopped:{name}")
    return reasons


async def readiness(app: web.Application) -> tuple[bool, dict[str, Any]]:
    reasons: list[str] = []
    detail: dict[str, Any] = {}
    fed = app.get(FEDERATION)
    if fed is None:
        return False, {"reasons": ["not_started"]}
    try:
        async with asyncio.timeout(DB_TIMEOUT):
            async with fed.db.read() as conn:
                current = await conn.run_sync(
                    lambda c: set(MigrationContext.configure(c).get_current_heads())
                )
    except Exception as exc:
        reasons.append("database_unreachable")
        detail["database"] = f"{type(exc).__name__}: {exc}"[:300]
    else:
        if current != schema_heads():
            reasons.append("schema_not_current")
            detail["schema"] = {"current": sorted(current), "expected": sorted(schema_heads())}
    reasons.extend(_workers(fed))
    detail["partners"] = len(fed.delivery.queues)
    return not reasons, {"reasons": reasons, **detail}


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/readyz")
    async def readyz(request: web.Request) -> web.Response:
        ready, body = await readiness(request.app)
        if ready:
            return web.json_response({"status": "ready", "partners": body["partners"]})
        return web.json_response({"status": "not_ready", **body}, status=503)

    return table
