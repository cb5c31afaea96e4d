"""Stored envelopes are sealed at rest (docs/security.md): after a real case.submit between two
nodes, no raw row of ``inbound_envelopes`` or ``outbox`` on either node holds the applicant's
name, ID number or phone, yet delivery, a resend (same receipt) and applying work; legacy
plaintext rows still go through; ``tongban keys rotate-data`` + ``reseal`` move every row to
the new key on running nodes; a tampered sealed value fails loudly instead of being used."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from node.cases.models import cases
from node.cases.personal import ID_PLACE, PHONE_PLACE
from node.cli import main as cli
from node.federation.identity import NodeIdentity
from node.federation.models import (
    INBOUND_TOKEN,
    OUTBOX_TOKEN,
    inbound_envelopes,
    inbound_messages,
    outbox,
)
from node.federation.reseal import reseal_envelopes
from node.storage.database import Database
from node.storage.sealing import (
    PREFIX,
    SealingError,
    column_resealer,
    load_sealer,
    reseal,
    rotate_data_key,
)
from protocol.envelope import new_claims, parse_envelope, sign_envelope
from protocol.messages import example_body
from tests.support.api import ApiClient
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.inbound import insert_inbound, stored_inbound
from tests.support.nodes import OfflineSender, RunningNode, make_configs
from tests.support.regions import materials_for, start_regions
from tests.support.waiting import wait_until

ITEM = "430400-XK-0001"  # decided by 衡阳市
PERSON = {
    "kind": "person",
    "name": "欧阳秀英",
    "id_type": "resident_id",
    "id_number": "430523198001010023",
    "phone": "13973900123",
}
PERSONAL = (PERSON["name"], PERSON["id_number"], PERSON["phone"])
BODY = example_body("case.progress")[0]


def readable(raw: Any) -> str:
    """Everything a reader of ``raw`` can get without a key: the value, each of its ``.`` and
    ``:`` separated parts base64url-decoded, and JSON in them with its escapes undone."""
    text = str(raw)
    found = [text]
    for part in text.replace(":", ".").split("."):
        try:
            decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            continue
        plain = decoded.decode("utf-8", errors="ignore")
        found.append(plain)
        with contextlib.suppress(ValueError):
            found.append(json.dumps(json.loads(plain), ensure_ascii=False))
    return "\n".join(found)


def leaks(raw: Any) -> list[str]:
    shown = readable(raw)
    return [value for value in PERSONAL if value in shown]


async def raw_rows(db: Database, table: Any) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(select(table))).all())


async def run_cli(*argv: str) -> int:
    """The real `tongban` command (it runs its own event loop, so in a thread)."""
    return await asyncio.to_thread(cli, list(argv))


@pytest.fixture
async def regions(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    nodes = await start_regions(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    yield nodes
    for node in nodes:
        await node.stop()


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    """Partnered, not started."""
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    nodes = [RunningNode(c) for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


async def test_a_case_submit_is_sealed_on_both_nodes_and_still_delivered_resent_and_applied(
    regions: list[RunningNode],
) -> None:
    shaoyang, hengyang = regions
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        approver = await ApiClient(hengyang.url, http).login("approver")
        item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
        created = await clerk.ok(
            "POST",
            "/api/v1/cases",
            {
                "item_code": ITEM,
                "mode": "proxy",
                "applicant": PERSON,
                "form": form_for(item, project_name="欧阳家老屋翻建"),
                "materials": await materials_for(clerk, item),
                "identity_verified": True,
                "delivery": {"method": "window", "address": None},
            },
            status=201,
        )
        case_no = created["case"]["case_no"]

        async def arrived() -> bool:
            listing = await approver.ok("GET", f"/api/v1/cases?q={case_no}")
            return bool(listing["cases"])

        # Delivered and applied: the handling region's approver sees the case.
        await wait_until(arrived)

    async def settled() -> bool:
        rows = await raw_rows(shaoyang.db, outbox) + await raw_rows(hengyang.db, outbox)
        return all(r.delivered_at for r in rows)

    await wait_until(settled)
    for node in (shaoyang, hengyang):
        for table in (inbound_envelopes, outbox):
            for row in await raw_rows(node.db, table):
                assert row.token.startswith(PREFIX), (node.config.region, table.name)
                assert not leaks(tuple(row)), (node.config.region, table.name)

    sent = [r for r in await raw_rows(shaoyang.db, outbox) if r.typ == "case.submit"]
    stored = [r for r in await raw_rows(hengyang.db, inbound_envelopes) if r.typ == "case.submit"]
    assert len(sent) == len(stored) == 1 and sent[0].jti == stored[0].jti
    token = shaoyang.fed.sealer.open(sent[0].token, OUTBOX_TOKEN)
    # The check above would have seen them in clear: the body holds all three.
    assert sorted(leaks(token)) == sorted(PERSONAL)
    assert hengyang.fed.sealer.open(stored[0].token, INBOUND_TOKEN) == token
    # A resend of the stored envelope gets the very receipt the sender holds.
    answer = await shaoyang.fed.client.post_envelope(hengyang.url, token)
    assert answer.status == 200
    assert answer.body.decode("ascii") == sent[0].receipt == stored[0].receipt
    # A sealed value does not open in the other column (its place is its associated data).
    with pytest.raises(SealingError):
        shaoyang.fed.sealer.open(sent[0].token, INBOUND_TOKEN)

    # A data key rotation while the nodes run: reseal moves the envelopes and the cases'
    # ID numbers and phones to the new key, and the running nodes still open them.
    for node in regions:
        assert await run_cli("keys", "rotate-data", "--dir", str(node.config.dir)) == 0

    async def following() -> bool:
        return all(n.fed.sealer.current.active == load_sealer(n.config.dir).active for n in regions)

    await wait_until(following)
    await wait_until(settled)
    for node in regions:
        assert await run_cli("keys", "reseal", "--dir", str(node.config.dir)) == 0
        sealer = load_sealer(node.config.dir)
        async with node.db.read() as conn:
            people = (
                await conn.execute(select(cases.c.applicant_id_number, cases.c.applicant_phone))
            ).all()
        assert len(people) == 1
        assert sealer.is_current(people[0].applicant_id_number)
        assert sealer.open(people[0].applicant_id_number, ID_PLACE) == PERSON["id_number"]
        assert sealer.open(people[0].applicant_phone, PHONE_PLACE) == PERSON["phone"]
        for table in (inbound_envelopes, outbox):
            assert all(sealer.is_current(r.token) for r in await raw_rows(node.db, table))
    async with aiohttp.ClientSession() as http:
        approver = await ApiClient(hengyang.url, http).login("approver")
        listing = await approver.ok("GET", f"/api/v1/cases?q={case_no}")
        revealed = await approver.act(listing["cases"][0]["id"], "reveal", {"reason": "verify"})
        assert revealed["revealed"] == {"id_number": PERSON["id_number"], "phone": PERSON["phone"]}


async def _signed(sender: OfflineSender, xt: str, seq: int = 1) -> str:
    identity = await NodeIdentity.load(sender.config, sender.db)
    claims = new_claims(
        iss=sender.config.region,
        aud="430400",
        typ="case.progress",
        xt=xt,
        seq=seq,
        body=BODY,
        now=time.time(),
    )
    return sign_envelope(claims, identity.private_key, identity.kid)


async def _store_inbound(receiver: Database, token: str, stored_as: str) -> str:
    """Put ``token`` into the receiver's store as the inbound writer would, stored as
    ``stored_as`` (plaintext: a node before sealing; or a tampered sealed value)."""
    stored = stored_inbound(token, received_at=time.time(), stored_as=stored_as)
    async with receiver.write() as conn:
        await insert_inbound(conn, [stored])
    return stored.jti


def tampered(sealed: str) -> str:
    """``sealed`` with one character of its ciphertext changed."""
    at = len(sealed) - 10
    return sealed[:at] + ("A" if sealed[at] != "A" else "B") + sealed[at + 1 :]


async def _prepare(
    pair: list[RunningNode], *, tamper: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Before the nodes start: two outbox rows in 邵阳县 (one stored as the case says, one
    fine) and one inbound envelope in 衡阳市 stored as the case says. Returns the jtis:
    (outbox: odd/fine, inbound: odd)."""
    shaoyang, hengyang = pair
    sender = await OfflineSender(shaoyang.config).open()
    receiver = Database(hengyang.config.database_url)
    sealer = load_sealer(shaoyang.config.dir)
    try:
        async with sender.db.write() as conn:
            odd = await sender.outbox.enqueue(
                conn, partner="430400", typ="case.progress", xt="XT-ODD", body=BODY
            )
            fine = await sender.outbox.enqueue(
                conn, partner="430400", typ="case.progress", xt="XT-FINE", body=BODY
            )
            stored = (
                await conn.execute(select(outbox.c.token).where(outbox.c.id == odd.id))
            ).scalar_one()
            plain = sealer.open(stored, OUTBOX_TOKEN)
            await conn.execute(
                update(outbox)
                .where(outbox.c.id == odd.id)
                .values(token=tampered(stored) if tamper else plain)
            )
        token = await _signed(sender, "XT-IN")
        receiver_sealer = load_sealer(hengyang.config.dir)
        sealed = receiver_sealer.seal(token, INBOUND_TOKEN)
        jti = await _store_inbound(receiver, token, tampered(sealed) if tamper else token)
    finally:
        await sender.close()
        await receiver.dispose()
    return {"odd": odd.jti, "fine": fine.jti}, {"odd": jti}


async def test_legacy_plaintext_rows_are_still_delivered_and_applied(
    pair: list[RunningNode],
) -> None:
    sent, received = await _prepare(pair, tamper=False)
    shaoyang, hengyang = [await n.start() for n in pair]

    async def done() -> bool:
        rows = {r.jti: r for r in await raw_rows(shaoyang.db, outbox)}
        messages = {r.jti: r for r in await raw_rows(hengyang.db, inbound_messages)}
        return (
            all(rows[j].delivered_at for j in sent.values())
            and all(j in messages for j in sent.values())
            and all(m.applied_at for m in messages.values())
        )

    await wait_until(done)
    messages = {r.jti: r for r in await raw_rows(hengyang.db, inbound_messages)}
    # Opened and handed to the case domain (which refuses progress on a case it does not
    # know: answered with case.error), not a failure of the store.
    assert messages[received["odd"]].last_error is None
    assert messages[received["odd"]].outcome.startswith(("applied", "refused:"))
    # What arrived from the legacy outbox row is stored sealed.
    stored = {r.jti: r for r in await raw_rows(hengyang.db, inbound_envelopes)}
    assert stored[sent["odd"]].token.startswith(PREFIX)


async def test_a_tampered_sealed_value_is_neither_applied_nor_sent(
    pair: list[RunningNode],
) -> None:
    with pytest.raises(SealingError):
        load_sealer(pair[0].config.dir).open(
            tampered(load_sealer(pair[0].config.dir).seal("x" * 40, OUTBOX_TOKEN)), OUTBOX_TOKEN
        )
    sent, received = await _prepare(pair, tamper=True)
    shaoyang, hengyang = [await n.start() for n in pair]

    async def failed_loudly() -> bool:
        rows = {r.jti: r for r in await raw_rows(shaoyang.db, outbox)}
        messages = {r.jti: r for r in await raw_rows(hengyang.db, inbound_messages)}
        return (
            bool(rows[sent["fine"]].delivered_at)
            and (rows[sent["odd"]].last_error or "").startswith("SealingError")
            and (messages[received["odd"]].last_error or "").startswith("SealingError")
        )

    await wait_until(failed_loudly)
    await asyncio.sleep(0.5)
    rows = {r.jti: r for r in await raw_rows(shaoyang.db, outbox)}
    messages = {r.jti: r for r in await raw_rows(hengyang.db, inbound_messages)}
    assert rows[sent["odd"]].delivered_at is None and rows[sent["odd"]].dead_at is None
    assert sent["odd"] not in messages  # never reached the partner
    assert messages[received["odd"]].applied_at is None
    assert messages[received["odd"]].attempts >= 1
    # The partner is not backed off for it: what is sent next goes at once.
    queue = shaoyang.fed.delivery.queues["430400"]
    assert queue.failures == 0
    later = await shaoyang.send("430400", "case.progress", "XT-LATER", BODY)

    async def later_delivered() -> bool:
        rows = {r.jti: r for r in await raw_rows(shaoyang.db, outbox)}
        return bool(rows[later.jti].delivered_at)

    await wait_until(later_delivered, timeout=5)


async def test_rotate_data_and_reseal_move_every_row_to_the_new_key_on_running_nodes(
    pair: list[RunningNode], capsys: pytest.CaptureFixture[str]
) -> None:
    await _prepare(pair, tamper=False)  # legacy plaintext rows on both sides
    shaoyang, hengyang = [await n.start() for n in pair]
    for n in range(3):
        await shaoyang.send("430400", "case.progress", f"XT-{n}", BODY)

    async def quiet() -> bool:
        """Everything delivered and applied both ways (the answers to the progress messages
        included), and both nodes seal with their active data key."""
        for node in pair:
            if node.fed.sealer.current.active != load_sealer(node.config.dir).active:
                return False
            if not all(r.delivered_at for r in await raw_rows(node.db, outbox)):
                return False
            if not all(r.applied_at for r in await raw_rows(node.db, inbound_messages)):
                return False
        return True

    await wait_until(quiet)
    old = {node.config.region: load_sealer(node.config.dir).active for node in pair}
    for node in pair:
        assert await run_cli("keys", "rotate-data", "--dir", str(node.config.dir)) == 0
    # The running nodes pick the new key up (within 2 s) before the reseal: what they write
    # from then on is sealed with it.
    await wait_until(quiet)
    for node in pair:
        assert node.fed.sealer.current.active != old[node.config.region]
        assert await run_cli("keys", "reseal", "--dir", str(node.config.dir)) == 0
    out = capsys.readouterr().out
    assert "inbound_envelopes.token" in out and "outbox.token" in out
    for node in pair:
        sealer = load_sealer(node.config.dir)
        assert sealer.active != old[node.config.region]
        for table, place in ((inbound_envelopes, INBOUND_TOKEN), (outbox, OUTBOX_TOKEN)):
            for row in await raw_rows(node.db, table):
                assert sealer.is_current(row.token), (node.config.region, table.name)
                parse_envelope(sealer.open(row.token, place))
        # A second pass has nothing left to do.
        assert await reseal(node.db, sealer, [reseal_envelopes]) == {
            INBOUND_TOKEN: 0,
            OUTBOX_TOKEN: 0,
        }
    # The running nodes follow: what is sent now is sealed with the new key on both sides,
    # delivered and applied.
    later = await shaoyang.send("430400", "case.progress", "XT-LATER", BODY)

    async def applied() -> bool:
        messages = {r.jti: r for r in await raw_rows(hengyang.db, inbound_messages)}
        return later.jti in messages and bool(messages[later.jti].applied_at)

    await wait_until(applied)
    for node, table in ((shaoyang, outbox), (hengyang, inbound_envelopes)):
        sealer = load_sealer(node.config.dir)
        rows = {r.jti: r for r in await raw_rows(node.db, table)}
        assert sealer.is_current(rows[later.jti].token)


async def test_reseal_column_seals_legacy_values_of_any_column(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    """The generic helper the case domain's columns use: plaintext and old-key values move to
    the active key, current ones stay, a value that does not open stops the pass."""
    db = Database(await databases.new_url("helper"))
    try:
        async with db.write() as conn:
            await conn.exec_driver_sql(
                "CREATE TABLE people (id INTEGER PRIMARY KEY, phone TEXT, note TEXT)"
            )
        sealer = load_sealer(tmp_path)
        old_sealed = sealer.seal("13973900002", "people.phone")
        rotate_data_key(tmp_path)
        sealer = load_sealer(tmp_path)
        current = sealer.seal("13973900003", "people.phone")
        async with db.write() as conn:
            for n, phone in enumerate(("13973900001", old_sealed, current, None), start=1):
                await conn.exec_driver_sql(
                    "INSERT INTO people (id, phone, note) VALUES ($1, $2, 'x')"
                    if not db.is_sqlite
                    else "INSERT INTO people (id, phone, note) VALUES (?, ?, 'x')",
                    (n, phone),
                )
        hook = column_resealer("people", "id", "phone", "people.phone")
        assert await reseal(db, sealer, [hook]) == {"people.phone": 2}
        async with db.read() as conn:
            rows = (await conn.exec_driver_sql("SELECT id, phone FROM people ORDER BY id")).all()
        assert rows[3][1] is None and rows[2][1] == current
        assert [sealer.open(r[1], "people.phone") for r in rows[:3]] == [
            "13973900001",
            "13973900002",
            "13973900003",
        ]
        assert all(sealer.is_current(r[1]) for r in rows[:3])
        async with db.write() as conn:
            await conn.exec_driver_sql(
                "UPDATE people SET phone = '" + tampered(old_sealed) + "' WHERE id = 4"
            )
        with pytest.raises(SealingError):
            await reseal(db, sealer, [hook])
    finally:
        await db.dispose()
