"""One replica serves a live inspection session (inspection/holding.py): the claim in the
session's row, on SQLite and PostgreSQL; and on a real node beside a second replica on its
database, a session the other holds is refused with ``session_elsewhere`` (its WebSocket and
its session API), taken once the other releases it, and closed here when the other took it
over after the claim ran out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert, select

from inspection import hub as hub_module
from inspection.holding import LEASE, Holding, replica_id
from inspection.hub import InspectionHub
from inspection.models import inspection_sessions
from node.appkeys import CASES, FEDERATION, HUB
from node.storage.database import Database
from node.storage.migrate import upgrade
from tests.support.api import ApiClient
from tests.support.databases import DatabaseFactory
from tests.support.inspections import accepted_case, schedule, ws_url
from tests.support.media import Client
from tests.support.nodes import RunningNode
from tests.support.waiting import wait_until

SESSION = "0" * 8 + "-0000-4000-8000-" + "0" * 12


@pytest.fixture
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await databases.new_url("holding"))
    await upgrade(database)
    now = time.time()
    async with database.write() as conn:
        await conn.execute(
            insert(inspection_sessions).values(
                id=SESSION,
                case_id=1,
                xt_id="XT-1",
                case_no="C-1",
                kind="inspection",
                status="scheduled",
                scheduled_at=now,
                expires_at=now + 3600,
                token_secret="00" * 32,
                checklist="[]",
                results="{}",
                participants="[]",
                created_by="approver",
                created_at=now,
            )
        )
    yield database
    await database.dispose()


async def _holder(db: Database) -> tuple[Any, Any]:
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(inspection_sessions.c.holder, inspection_sessions.c.held_until).where(
                    inspection_sessions.c.id == SESSION
                )
            )
        ).one()
    return row.holder, row.held_until


async def test_one_replica_holds_a_session_until_it_releases_or_its_claim_runs_out(
    db: Database,
) -> None:
    a, b = Holding(db, replica="a" * 32), Holding(db, replica="b" * 32)
    now = time.time()
    assert await a.claim(SESSION, now=now)
    assert await _holder(db) == ("a" * 32, now + LEASE)
    assert not await b.claim(SESSION, now=now + 1)
    assert await a.claim(SESSION, now=now + 1)  # again: still ours
    # Renewed: the claim moves on; the other learns it holds nothing.
    assert await a.renew([SESSION], now=now + 5) == set()
    assert await b.renew([SESSION], now=now + 5) == {SESSION}
    assert not await b.claim(SESSION, now=now + 5 + LEASE - 0.5)
    # Not renewed in time: the other may take it, and the first learns it lost it.
    assert await b.claim(SESSION, now=now + 5 + LEASE + 0.5)
    assert await a.renew([SESSION], now=now + 5 + LEASE + 1) == {SESSION}
    assert (await _holder(db))[0] == "b" * 32
    # Releasing frees only one's own claims.
    await a.release([SESSION])
    assert (await _holder(db))[0] == "b" * 32
    await b.release([SESSION])
    assert await _holder(db) == (None, None)
    assert await a.claim(SESSION, now=now + 30)
    assert await a.renew([], now=now + 30) == set()


def test_a_replica_started_again_in_the_same_place_is_the_same_holder(tmp_path: Path) -> None:
    """`tongban run` names its replica by machine, address and node folder: started again
    after a crash it takes its own sessions back at once (tests/test_inspection_crash.py)."""
    here = replica_id("127.0.0.1", 8400, tmp_path)
    assert here == replica_id("127.0.0.1", 8400, tmp_path)
    assert len(here) == 32 and int(here, 16) >= 0
    others = {
        replica_id("127.0.0.1", 8401, tmp_path),
        replica_id("0.0.0.0", 8400, tmp_path),
        replica_id("127.0.0.1", 8400, tmp_path / "other"),
    }
    assert here not in others and len(others) == 3


def _other_replica(node: RunningNode, root: Path) -> InspectionHub:
    """A second replica's hub on the node's database (as `tongban run` makes it)."""
    return InspectionHub(
        db=node.db,
        blobs=node.app[FEDERATION].blobs,
        root=root,
        region=node.config.region,
        settings=node.config.inspection,
        identity=lambda: node.app[FEDERATION].identity,
        cases=node.app[CASES],
    )


async def test_a_session_another_replica_holds_is_refused_here_until_released(
    regions: list[RunningNode], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hengyang, shaoyang = regions
    here = shaoyang.app[HUB]
    other = _other_replica(shaoyang, tmp_path / "other")
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        approver = await ApiClient(shaoyang.url, http).login("approver")
        inspector = await ApiClient(shaoyang.url, http).login("inspector")
        case_no, handling_id, receiving_id = await accepted_case(clerk, approver)
        scheduled = await schedule(approver, clerk, case_no, handling_id, receiving_id)
        sid = scheduled.session_id
        url = ws_url(shaoyang, sid)

        async def join() -> dict[str, Any]:
            client = Client(http, url, {"type": "join", "auth": inspector.token})
            try:
                return await client.open()
            finally:
                await client.close()

        # The other replica serves it: here, the socket and the session API are refused and
        # no copy is made.
        await other.get(sid)
        refused = await join()
        assert (refused["type"], refused["code"]) == ("error", "session_elsewhere")
        status, body = await inspector.call("PUT", f"/inspection/v1/sessions/{sid}/checklist/0", {})
        assert (status, body["error"]) == (503, "session_elsewhere")
        assert sid not in here.sessions

        # The other replica stops: its claim is released and this one serves the session.
        await other.close()
        assert (await join())["type"] == "joined"
        assert sid in here.sessions

        # This replica's claim is taken over (as if it had not renewed it in time): at its
        # next renewal (every 0.1 s from the end of the current wait) it closes its copy.
        monkeypatch.setattr(hub_module, "RENEW_EVERY", 0.1)
        thief = Holding(shaoyang.db)
        assert await thief.claim(sid, now=time.time() + LEASE + 1)

        async def closed_here() -> bool:
            return sid not in here.sessions

        await wait_until(closed_here, timeout=15)
        assert (await join())["code"] == "session_elsewhere"
        await thief.release([sid])
        assert (await join())["type"] == "joined"
