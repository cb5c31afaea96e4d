"""Delivery behaviour between two real nodes: blobs on demand, dead letters, backoff and its
reset, key rotation picked up by the partner, metrics."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from node.federation.identity import rotate_key
from node.federation.models import INBOUND_TOKEN, inbound_envelopes, outbox, partner_keys
from node.federation.partners import load_partners, render_partners
from protocol.envelope import verify_envelope
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs
from tests.support.waiting import wait_until

BODY = example_body("case.progress")[0]


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    nodes = [RunningNode(c) for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


async def outbox_rows(node: RunningNode) -> list:  # type: ignore[type-arg]
    async with node.db.read() as conn:
        return list((await conn.execute(select(outbox).order_by(outbox.c.id))).all())


async def test_blobs_are_uploaded_when_the_partner_asks_for_them(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    data = os.urandom(700_000)
    sha = await shaoyang.fed.blobs.put_bytes(data)
    blob = {
        "sha256": sha,
        "size": len(data),
        "media_type": "application/pdf",
        "name": "营业执照.pdf",
    }
    await shaoyang.send("430400", "case.progress", "XT-B", BODY, blobs=[blob])

    async def done() -> bool:
        return all(r.delivered_at for r in await outbox_rows(shaoyang))

    await wait_until(done)
    assert hashlib.sha256(hengyang.fed.blobs.path(sha).read_bytes()).hexdigest() == sha


async def test_final_refusal_becomes_a_dead_letter_and_is_not_retried(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    # 衡阳市 no longer trusts 邵阳县: every envelope is refused with unknown_issuer (401).
    hengyang.config.partners_file.write_text(
        render_partners(
            [
                p
                for p in load_partners(hengyang.config.partners_file).values()
                if p.region != "430523"
            ]
        ),
        encoding="utf-8",
    )
    await hengyang.start()
    await shaoyang.start()
    await shaoyang.send("430400", "case.progress", "XT-D", BODY)

    async def dead() -> bool:
        return all(r.dead_at for r in await outbox_rows(shaoyang))

    await wait_until(dead)
    [row] = await outbox_rows(shaoyang)
    assert row.last_status == 401
    assert row.last_error.startswith("unknown_issuer")
    assert row.attempts == 1
    assert row.delivered_at is None


async def test_partner_down_then_back_gets_everything_in_order(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = pair
    await shaoyang.start()
    for _ in range(5):
        await shaoyang.send("430400", "case.progress", "XT-O", BODY)

    async def retried() -> bool:
        rows = await outbox_rows(shaoyang)
        return all(r.attempts >= 2 for r in rows)

    await wait_until(retried)
    queue = shaoyang.fed.delivery.queues["430400"]
    assert queue.failures >= 2
    assert all(r.delivered_at is None and r.last_error for r in await outbox_rows(shaoyang))
    await hengyang.start()

    async def delivered() -> bool:
        return all(r.delivered_at for r in await outbox_rows(shaoyang))

    await wait_until(delivered)
    async with hengyang.db.read() as conn:
        stored = (
            (await conn.execute(select(inbound_envelopes.c.seq).order_by(inbound_envelopes.c.seq)))
            .scalars()
            .all()
        )
    assert stored == [1, 2, 3, 4, 5]
    assert queue.failures == 0


async def test_hearing_from_a_partner_resets_the_backoff(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = pair
    await shaoyang.start()
    queue = shaoyang.fed.delivery.queues["430400"]
    queue.failures = 12
    queue.backoff_until = time.monotonic() + 3600
    async with shaoyang.db.write() as conn:
        await shaoyang.fed.outbox.enqueue(
            conn, partner="430400", typ="case.progress", xt="XT-H", body=BODY
        )
        await conn.execute(outbox.update().values(next_attempt_at=time.time() + 3600))
    await hengyang.start()
    # 衡阳市 sends something to 邵阳县: 邵阳县 must retry towards it now, not in an hour.
    await hengyang.send("430523", "case.progress", "XT-H2", BODY)

    async def delivered() -> bool:
        return all(r.delivered_at for r in await outbox_rows(shaoyang))

    await wait_until(delivered, timeout=15)
    assert queue.failures == 0


async def test_rotated_key_is_learned_by_the_partner_and_old_envelopes_still_verify(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await shaoyang.send("430400", "case.progress", "XT-K", BODY)

    async def delivered(n: int) -> bool:
        rows = await outbox_rows(shaoyang)
        return len(rows) == n and all(r.delivered_at for r in rows)

    await wait_until(lambda: delivered(1))
    old_kid = shaoyang.fed.identity.kid
    _old, new_kid = await rotate_key(shaoyang.config, shaoyang.db)
    await shaoyang.fed.reload_identity()
    assert shaoyang.fed.identity.kid == new_kid != old_kid
    await shaoyang.send("430400", "case.progress", "XT-K", BODY)
    await wait_until(lambda: delivered(2))
    async with hengyang.db.read() as conn:
        learned = (await conn.execute(select(partner_keys.c.kid, partner_keys.c.signed_by))).all()
        tokens = (
            await conn.execute(select(inbound_envelopes.c.token, inbound_envelopes.c.kid))
        ).all()
    assert [(r.kid, r.signed_by) for r in learned] == [(new_kid, old_kid)]
    assert {t.kid for t in tokens} == {old_kid, new_kid}
    # Archive check: both verify later with the keys 衡阳市 holds, the retired one included.
    for token in tokens:
        verify_envelope(
            hengyang.fed.sealer.open(token.token, INBOUND_TOKEN),
            hengyang.fed.trust.keys,
            recipient=None,
            now=time.time(),
            check_time=False,
        )


async def test_metrics_report_traffic_and_outbox_depth(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    for _ in range(3):
        await shaoyang.send("430400", "case.progress", "XT-M", BODY)

    async def delivered() -> bool:
        rows = await outbox_rows(shaoyang)
        return all(r.delivered_at for r in rows)

    await wait_until(delivered)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{hengyang.url}/metrics") as resp:
            received = await resp.text()
        async with http.get(f"{shaoyang.url}/metrics") as resp:
            sent = await resp.text()
    assert 'tongban_envelopes_in_total{result="stored",type="case.progress"} 3.0' in received
    assert (
        'tongban_envelopes_out_total{partner="430400",result="delivered",type="case.progress"} 3.0'
        in sent
    )
    assert 'tongban_outbox_depth{partner="430400"} 0.0' in sent
    assert 'tongban_delivery_latency_seconds_count{partner="430400"} 3.0' in sent
