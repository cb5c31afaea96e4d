"""Replicas: several `tongban run` processes of one region on one PostgreSQL database (same
node folder, same config, shared blob folder), with real processes and a SIGKILL, no mocks.

Region 430523 runs as two replicas; its partner 430400 as one process. Both outboxes hold a
burst for the other side. One replica is killed in the middle, then started again. After
that: every envelope delivered and stored once, applied once and in seq order per case, each
refusal answered once; no envelope sent twice except those the killed replica had on the
wire (sent once more by the survivor once their lease ran out); the same envelope posted to
both replicas at once is stored once and gets one receipt.

PostgreSQL only: set TONGBAN_TEST_DATABASE_URL (SQLite serves one process per file)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import and_, func

from node.config import NodeConfig
from node.federation.identity import NodeIdentity
from node.federation.models import inbound_envelopes, outbox
from node.provisioning import init_node, link_all
from node.storage.database import Database
from protocol.envelope import new_claims, sign_envelope
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory, using_postgres
from tests.support.nodes import NodeProcess, free_port
from tests.support.waiting import wait_until
from tests.test_faults import (
    Node,
    Pair,
    all_delivered,
    burst,
    check_exactly_once,
    federation_toml,
)

pytestmark = [
    pytest.mark.slow,
    # Three node processes and a thousand and more messages each way: on a busy machine this
    # takes minutes (the waits inside have their own limits).
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not using_postgres(),
        reason="replicas share one PostgreSQL database: set TONGBAN_TEST_DATABASE_URL "
        "(e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test) to run",
    ),
]

REPLICATED = ("430523", "邵阳县")
PARTNER = ("430400", "衡阳市")
#: The claim lease: rows a killed replica was sending are free again after this long.
LEASE = 6.0


class Replica(NodeProcess):
    """`python -m node.cli run --dir DIR --port P`: one more process of a region."""

    def __init__(self, config: NodeConfig, log_dir: Path, port: int) -> None:
        super().__init__(config, log_dir)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def label(self) -> str:
        return f"replica {self.port}"

    def argv(self) -> list[str]:
        return [*super().argv(), "--port", str(self.port)]

    async def start(self, timeout: float = 60.0) -> None:
        await super().start(timeout)


def log_entries(log_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append({"file": str(path), **entry})
    return found


def received_again(log_dir: Path) -> Counter[str]:
    """Per jti, how often a node was sent an envelope it had already stored (its log says so
    each time: "envelope received again")."""
    return Counter(
        str(e.get("jti")) for e in log_entries(log_dir) if e.get("msg") == "envelope received again"
    )


def errors(log_dir: Path) -> list[str]:
    return [
        f"{Path(e['file']).name}: {e.get('msg')} {str(e.get('exc', ''))[-300:]}"
        for e in log_entries(log_dir)
        if e.get("level") in ("error", "critical")
    ]


@pytest.fixture
async def region_pair(
    tmp_path: Path, databases: DatabaseFactory
) -> AsyncIterator[tuple[Node, list[Replica], Node, list[Path]]]:
    configs = []
    for region, name in (REPLICATED, PARTNER):
        configs.append(
            await init_node(
                tmp_path / region,
                region=region,
                name=name,
                port=free_port(),
                database_url=await databases.new_url(region),
                # A window of 16 keeps the burst on the wire long enough to kill a replica in
                # the middle of it (at the default 128 it can be over first).
                extra_toml=federation_toml(claim_seconds=LEASE, window=16),
            )
        )
    await link_all(configs)
    replicated_cfg, partner_cfg = configs
    dirs = [tmp_path / "logs" / d for d in ("r0", "r1", "partner")]
    for d in dirs:
        d.mkdir(parents=True)
    # Replica 0 serves the URL the partner knows; replica 1 its own port (in production a
    # load balancer would spread the partner's requests over both).
    replicas = [
        Replica(replicated_cfg, dirs[0], replicated_cfg.port),
        Replica(replicated_cfg, dirs[1], free_port()),
    ]
    replicated = Node(replicated_cfg, replicas[0], Database(replicated_cfg.database_url), dirs[0])
    partner = Node(
        partner_cfg, NodeProcess(partner_cfg, dirs[2]), Database(partner_cfg.database_url), dirs[2]
    )
    try:
        yield replicated, replicas, partner, dirs
    finally:
        for proc in (*replicas, partner.proc):
            proc.kill()
        await replicated.db.dispose()
        await partner.db.dispose()


async def post_both(replicas: list[Replica], token: str) -> list[tuple[int, bytes]]:
    async with aiohttp.ClientSession() as http:

        async def post(url: str) -> tuple[int, bytes]:
            async with http.post(
                f"{url}/federation/v1/envelopes",
                data=token.encode("ascii"),
                headers={"Content-Type": "application/jose"},
            ) as resp:
                return resp.status, await resp.read()

        return list(await asyncio.gather(*(post(r.url) for r in replicas)))


async def test_two_replicas_one_killed_deliver_and_apply_everything_once_in_order(
    region_pair: tuple[Node, list[Replica], Node, list[Path]],
) -> None:
    replicated, replicas, partner, dirs = region_pair
    out = Pair(replicated, partner, dirs[0])  # replicated region -> partner
    back = Pair(partner, replicated, dirs[0])  # partner -> replicated region
    plan_out = burst(cases=50, per_case=20, prefix="XT-ROUT")
    plan_back = burst(cases=30, per_case=10, prefix="XT-RBACK")
    await out.enqueue(replicated, partner.region, plan_out)
    await back.enqueue(partner, replicated.region, plan_back)
    try:
        await partner.start()
        for replica in replicas:
            await replica.start()
        replicated.note("two replicas up")

        # Inbound dedupe holds across replicas: the same envelope posted to both at once is
        # stored once, and both answers carry the one receipt.
        identity = await NodeIdentity.load(partner.config, partner.db)
        body, blobs = example_body("case.progress")
        for n in range(5):
            claims = new_claims(
                iss=partner.region,
                aud=replicated.region,
                typ="case.progress",
                xt=f"XT-RDUP-{n}",
                seq=1,
                body=body,
                blobs=blobs,
                now=time.time(),
            )
            token = sign_envelope(claims, identity.private_key, identity.kid)
            answers = await post_both(replicas, token)
            assert [status for status, _ in answers] == [200, 200], answers
            assert answers[0][1] == answers[1][1]
            stored = await replicated.rows(
                inbound_envelopes.c.receipt, where=inbound_envelopes.c.jti == claims["jti"]
            )
            assert [s.receipt.encode() for s in stored] == [answers[0][1]]

        # Both replicas deliver: wait until each has delivered something and a window is on
        # the wire, then kill the second one.
        victim = replicas[1]
        mine = outbox.c.claimed_by.like(f"%:{victim.pid}:%")

        async def both_working() -> bool:
            delivered = and_(out.ours(outbox), outbox.c.delivered_at.is_not(None))
            workers = await replicated.rows(
                func.count(func.distinct(outbox.c.claimed_by)), where=delivered
            )
            on_wire = await replicated.count(
                outbox, and_(mine, outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_(None))
            )
            return workers[0][0] >= 2 and await out.delivered_count() >= 150 and on_wire > 0

        await wait_until(both_working, timeout=60, interval=0.01)
        victim.kill()
        on_wire = {
            r.jti
            for r in await replicated.rows(
                outbox.c.jti,
                where=and_(mine, outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_(None)),
            )
        }
        delivered_before = await out.delivered_count()
        replicated.note(
            f"replica {victim.pid} killed with {len(on_wire)} envelopes on the wire; "
            f"{delivered_before}/{len(plan_out)} delivered"
        )
        assert delivered_before < len(plan_out), "kill came too late: the burst was over"

        # The survivor takes the dead replica's rows once their lease runs out ...
        await all_delivered(out, len(plan_out), timeout=120)
        await all_delivered(back, len(plan_back), timeout=120)
        # ... and a restarted replica joins in for what is left (the answers).
        await victim.start()
        replicated.note("replica restarted")

        expected_out = Counter(xt for _t, xt, _b, _bl in plan_out)
        expected_back = Counter(xt for _t, xt, _b, _bl in plan_back)
        # Applying (each message refused and answered) is slower than storing: on a busy
        # machine it takes a while after delivery.
        await check_exactly_once(out, expected_out, apply_timeout=300)
        await check_exactly_once(back, expected_back, apply_timeout=300)

        # Every answer (case.error to a refused message) delivered too, none lost.
        async def answers_delivered() -> bool:
            pending = and_(outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_(None))
            return (
                await replicated.count(outbox, pending) == 0
                and await partner.count(outbox, pending) == 0
            )

        await wait_until(answers_delivered, timeout=300, interval=0.2)

        # No envelope was sent twice, except those the killed replica had on the wire: the
        # survivor sent each of those once more (the partner answered with the same receipt).
        again_at_partner = received_again(dirs[2])
        assert set(again_at_partner) <= on_wire, set(again_at_partner) - on_wire
        assert all(n == 1 for n in again_at_partner.values()), again_at_partner
        # The partner never crashed and sends to replica 0 only: nothing came twice.
        again_at_replicas = received_again(dirs[0]) + received_again(dirs[1])
        dedupe_test = 5  # the envelopes posted to both replicas above
        assert sum(again_at_replicas.values()) == dedupe_test, again_at_replicas
        replicated.note(
            f"{len(again_at_partner)} of {len(on_wire)} envelopes on the wire at the kill "
            "were sent again (the others had not reached the partner)"
        )

        # Applying on two replicas raised nothing (no race on a case's first message).
        problems = errors(dirs[0]) + errors(dirs[1]) + errors(dirs[2])
        assert not problems, "\n".join(problems[:10])
    except BaseException:
        print(f"node logs in {dirs[0].parent}")
        raise
