"""Two real nodes on real sockets exchanging envelopes: delivery, receipts, dedupe, ordering,
blobs, dead letters, backoff and key rotation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from node.federation.models import inbound_cursors, inbound_envelopes, inbound_messages, outbox
from protocol.envelope import new_claims, sign_envelope
from protocol.messages import example_body
from protocol.receipt import verify_receipt
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs
from tests.support.waiting import wait_until

SHAOYANG = ("430523", "邵阳县")
HENGYANG = ("430400", "衡阳市")
PROGRESS = example_body("case.progress")[0]


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [SHAOYANG, HENGYANG])
    nodes = [await RunningNode(c).start() for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


async def count(node: RunningNode, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with node.db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


async def delivered(node: RunningNode) -> int:
    return await count(node, outbox, outbox.c.delivered_at.is_not(None))


async def test_outbox_delivers_every_envelope_once_with_verified_receipts(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    for case in range(10):
        for _ in range(5):
            await shaoyang.send("430400", "case.progress", f"XT-{case}", PROGRESS)

    async def all_delivered() -> bool:
        return await delivered(shaoyang) == 50

    await wait_until(all_delivered)
    assert await count(hengyang, inbound_envelopes) == 50
    assert await count(hengyang, inbound_envelopes, inbound_envelopes.c.duplicate.is_(True)) == 0

    async def all_applied() -> bool:
        return (
            await count(hengyang, inbound_messages, inbound_messages.c.applied_at.is_not(None))
            == 50
        )

    await wait_until(all_applied)
    async with hengyang.db.read() as conn:
        cursors = dict(
            (await conn.execute(select(inbound_cursors.c.xt, inbound_cursors.c.next_seq))).all()
        )
    assert cursors == {f"XT-{case}": 6 for case in range(10)}
    async with shaoyang.db.read() as conn:
        rows = (await conn.execute(select(outbox.c.jti, outbox.c.digest, outbox.c.receipt))).all()
    for row in rows:
        receipt = verify_receipt(
            row.receipt,
            shaoyang.fed.trust.keys,
            sender="430523",
            receiver="430400",
            ref=row.jti,
            digest=row.digest,
        )
        assert receipt.ref == row.jti


async def test_resending_the_same_envelope_returns_the_same_receipt(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    claims = new_claims(
        iss="430523",
        aud="430400",
        typ="case.progress",
        xt="XT-R",
        seq=1,
        body=PROGRESS,
        now=time.time(),
    )
    token = sign_envelope(claims, shaoyang.fed.identity.private_key, shaoyang.fed.identity.kid)
    async with aiohttp.ClientSession() as http:
        receipts = []
        for _ in range(3):
            async with http.post(
                f"{hengyang.url}/federation/v1/envelopes",
                data=token,
                headers={"Content-Type": "application/jose"},
            ) as resp:
                assert resp.status == 200
                receipts.append(await resp.text())
    assert receipts[0] == receipts[1] == receipts[2]
    assert await count(hengyang, inbound_envelopes) == 1
    assert await count(hengyang, inbound_messages) == 1


async def test_reissue_with_new_jti_is_acknowledged_and_never_applied_twice(
    pair: list[RunningNode],
) -> None:
    shaoyang, hengyang = pair
    key, kid = shaoyang.fed.identity.private_key, shaoyang.fed.identity.kid
    first = sign_envelope(
        new_claims(
            iss="430523",
            aud="430400",
            typ="case.progress",
            xt="XT-I",
            seq=1,
            body=PROGRESS,
            now=time.time(),
        ),
        key,
        kid,
    )
    again = sign_envelope(
        new_claims(
            iss="430523",
            aud="430400",
            typ="case.progress",
            xt="XT-I",
            seq=1,
            body=PROGRESS,
            now=time.time(),
        ),
        key,
        kid,
    )
    async with aiohttp.ClientSession() as http:
        for token in (first, again):
            async with http.post(
                f"{hengyang.url}/federation/v1/envelopes",
                data=token,
                headers={"Content-Type": "application/jose"},
            ) as resp:
                assert resp.status == 200
    assert await count(hengyang, inbound_envelopes) == 2
    assert await count(hengyang, inbound_envelopes, inbound_envelopes.c.duplicate.is_(True)) == 1
    assert await count(hengyang, inbound_messages) == 1


async def test_jti_reused_for_other_content_is_refused(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = pair
    key, kid = shaoyang.fed.identity.private_key, shaoyang.fed.identity.kid
    claims = new_claims(
        iss="430523",
        aud="430400",
        typ="case.progress",
        xt="XT-J",
        seq=1,
        body=PROGRESS,
        now=time.time(),
    )
    other = dict(claims, xt="XT-K")
    async with aiohttp.ClientSession() as http:
        for token, status in (
            (sign_envelope(claims, key, kid), 200),
            (sign_envelope(other, key, kid), 422),
        ):
            async with http.post(
                f"{hengyang.url}/federation/v1/envelopes",
                data=token,
                headers={"Content-Type": "application/jose"},
            ) as resp:
                assert resp.status == status
                if status != 200:
                    assert (await resp.json())["error"] == "jti_reused"
    assert await count(hengyang, inbound_envelopes) == 1
