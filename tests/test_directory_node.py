"""Nodes following a signed partner directory over real HTTP: `tongban directory serve` in a
real process, nodes on real sockets (docs/protocol.md §12.1).

A directory of 3 000 regions is built, signed, served, fetched and applied by two nodes that
never exchanged partners.toml entries, and they then exchange envelopes; a rotated key reaches a
node through the directory alone; bad directories are refused with their codes and change
nothing; unchanged ones cost a 304; partners.toml wins over the directory; the directory in
force survives a restart and ends when it expires.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from node.appkeys import DIRECTORY
from node.config import NodeConfig
from node.doctor import run_checks
from node.federation.directory import DirectoryFollower
from node.federation.directory_state import load_status, report
from node.federation.identity import NodeIdentity, rotate_key
from node.federation.models import inbound_envelopes, partner_keys
from node.federation.partners import Partner, render_partners
from node.provisioning import self_entry
from node.storage.database import Database
from protocol.directory import DirectoryEntry
from protocol.envelope import new_claims, sign_envelope
from protocol.keys import TrustedKey, generate_private_key, key_id, utc
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory
from tests.support.directory import (
    DAY,
    DirectoryAuthority,
    DirectoryServerProcess,
    directory_nodes,
    directory_toml,
    entries_of,
    entry_of,
    synthetic_entries,
)
from tests.support.nodes import NodeProcess, RunningNode
from tests.support.waiting import wait_until
from tests.vectors.tokens import compact_json, payload_of, replace_payload

SHAOYANG = ("430523", "邵阳县")
HENGYANG = ("430400", "衡阳市")
PROGRESS = example_body("case.progress")[0]


def tampered(token: str) -> str:
    """``token`` with a region's URL changed after signing (the signature kept)."""
    claims = json.loads(payload_of(token))
    claims["regions"][0]["url"] = "https://attacker.example"
    return replace_payload(token, compact_json(claims))


@dataclass
class World:
    authority: DirectoryAuthority
    server: DirectoryServerProcess
    configs: list[NodeConfig]
    base: list[DirectoryEntry]


@pytest.fixture
async def world(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[World]:
    """An authority serving a directory of 邵阳县, 衡阳市 and two other regions, and the two
    nodes configured to follow it (not started)."""
    authority = DirectoryAuthority(tmp_path / "authority")
    server = DirectoryServerProcess(authority.served, tmp_path / "server.log")
    toml = directory_toml(server.url, [authority.public_key])
    configs = await directory_nodes(tmp_path, databases, [SHAOYANG, HENGYANG], toml)
    base = [*await entries_of(configs), *synthetic_entries(2)]
    authority.publish(authority.sign(base, serial=10))
    await server.start()
    yield World(authority, server, configs, base)
    server.stop()


def follower(node: RunningNode) -> DirectoryFollower:
    assert node.app is not None
    found = node.app[DIRECTORY]
    assert found is not None
    return found


async def count(node: RunningNode, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with node.db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


async def serial_is(node: RunningNode, serial: int) -> None:
    async def check() -> bool:
        directory = node.fed.trust.directory
        return directory is not None and directory.serial == serial

    await wait_until(check)


async def metrics(node: RunningNode) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as resp:
        return await resp.text()


async def post_envelope(url: str, token: str) -> tuple[int, dict[str, object] | str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/federation/v1/envelopes",
            data=token,
            headers={"Content-Type": "application/jose"},
        ) as resp,
    ):
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- 3 000 regions ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_directory_of_3000_regions_is_built_signed_served_fetched_and_applied(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    authority = DirectoryAuthority(tmp_path / "authority")
    server = DirectoryServerProcess(authority.served, tmp_path / "server.log")
    toml = directory_toml(server.url, [authority.public_key])
    # A rare fallback scan for due rows (one query for all 2 999 partners, docs/protocol.md
    # "Delivery scheduling"); nothing here waits for it.
    configs = await directory_nodes(tmp_path, databases, [SHAOYANG, HENGYANG], toml, poll=60)
    # What the regions registered: two real nodes' `partners self` and 2 998 others, built
    # and signed by the authority's commands.
    sources = tmp_path / "registered"
    sources.mkdir()
    for config in configs:
        (sources / f"{config.region}.toml").write_text(
            render_partners([await self_entry(config)]), encoding="utf-8"
        )
    others = synthetic_entries(2998)
    (sources / "others.toml").write_text(
        render_partners(
            [Partner(region=e.region, name=e.name, url=e.url, keys=e.keys) for e in others]
        ),
        encoding="utf-8",
    )
    unsigned = tmp_path / "directory.json"
    built = await asyncio.to_thread(
        run_cli, "directory", "build", "--out", str(unsigned), str(sources)
    )
    assert built.returncode == 0, built.stderr
    assert "3000 regions" in built.stdout
    signed = await asyncio.to_thread(
        run_cli,
        "directory",
        "sign",
        "--authority-dir",
        str(authority.folder),
        "--in",
        str(unsigned),
        "--out",
        str(authority.served),
        "--serial",
        "42",
    )
    assert signed.returncode == 0, signed.stderr
    await server.start()
    # Two real `tongban run` processes that never exchanged partners.toml entries.
    processes = [NodeProcess(c, tmp_path) for c in configs]
    try:
        for process in processes:
            await process.start()
        async with aiohttp.ClientSession() as http:
            for config in configs:

                async def ready(c: NodeConfig = config) -> bool:
                    # Every region but its own is a partner with a delivery queue.
                    return await answers(http, c, "/readyz", '"partners": 2999')

                async def in_force(c: NodeConfig = config) -> bool:
                    return await answers(http, c, "/metrics", "tongban_directory_serial 42.0")

                await wait_until(ready, timeout=300)
                await wait_until(in_force, timeout=300)
                assert await answers(http, config, "/metrics", "tongban_directory_regions 3000.0")
            # Each accepts the other's envelopes, signed with keys it knows from the directory
            # alone (resent until the node's database has time for it: the same bytes are
            # acknowledged once).
            for sender, receiver in ((configs[0], configs[1]), (configs[1], configs[0])):
                token = await envelope_from(sender, receiver.region, "XT-3000")

                async def taken(t: str = token, r: NodeConfig = receiver) -> bool:
                    return await accepted(http, r, t)

                await wait_until(taken, timeout=300)
        found = report(configs[0], time.time())
        assert found.in_force is not None and found.in_force.serial == 42
        assert len(found.in_force.entries) == 3000
    finally:
        for process in processes:
            process.stop()
        server.stop()


async def answers(http: aiohttp.ClientSession, config: NodeConfig, path: str, text: str) -> bool:
    try:
        async with http.get(f"{config.url}{path}") as resp:
            return resp.status == 200 and text in await resp.text()
    except aiohttp.ClientError:
        return False


async def envelope_from(config: NodeConfig, to: str, xt: str) -> str:
    db = Database(config.database_url)
    try:
        identity = await NodeIdentity.load(config, db)
    finally:
        await db.dispose()
    claims = new_claims(
        iss=config.region, aud=to, typ="case.progress", xt=xt, seq=1, body=PROGRESS, now=time.time()
    )
    return sign_envelope(claims, identity.private_key, identity.kid)


async def accepted(http: aiohttp.ClientSession, config: NodeConfig, token: str) -> bool:
    try:
        async with http.post(
            f"{config.url}/federation/v1/envelopes",
            data=token,
            headers={"Content-Type": "application/jose"},
        ) as resp:
            if 400 <= resp.status < 500:
                raise AssertionError(f"refused: {resp.status} {await resp.text()}")
            return resp.status == 200
    except aiohttp.ClientError:
        return False


# -- key rotation through the directory alone ---------------------------------------------------


async def test_a_rotated_key_reaches_a_node_through_the_directory_alone(world: World) -> None:
    shaoyang_config, hengyang_config = world.configs
    hengyang = await RunningNode(hengyang_config).start()
    try:
        await serial_is(hengyang, 10)
        # 邵阳县 rotates while its node is down: its descriptor cannot teach anybody the key.
        db = Database(shaoyang_config.database_url)
        try:
            _old, new_kid = await rotate_key(shaoyang_config, db)
            identity = await NodeIdentity.load(shaoyang_config, db)
        finally:
            await db.dispose()
        assert identity.kid == new_kid

        def envelope(xt: str) -> str:
            claims = new_claims(
                iss="430523",
                aud="430400",
                typ="case.progress",
                xt=xt,
                seq=1,
                body=PROGRESS,
                now=time.time(),
            )
            return sign_envelope(claims, identity.private_key, identity.kid)

        status, body = await post_envelope(hengyang.url, envelope("XT-ROT-1"))
        assert status == 401 and isinstance(body, dict) and body["error"] == "unknown_kid"

        # The authority re-signs with 邵阳县's new entry (both keys) under a higher serial.
        rotated = [entry_of(await self_entry(shaoyang_config)), *world.base[1:]]
        world.authority.publish(world.authority.sign(rotated, serial=11))
        assert await follower(hengyang).refresh() == "applied"
        assert hengyang.fed.trust.keys.get(new_kid) is not None

        status, body = await post_envelope(hengyang.url, envelope("XT-ROT-2"))
        assert status == 200, body
        assert await count(hengyang, inbound_envelopes, inbound_envelopes.c.xt == "XT-ROT-2") == 1
        # Learned from the directory, not from a descriptor.
        assert await count(hengyang, partner_keys) == 0
    finally:
        await hengyang.stop()


# -- refusals -----------------------------------------------------------------------------------


async def test_bad_directories_are_refused_with_their_codes_and_change_nothing(
    world: World,
) -> None:
    hengyang = await RunningNode(world.configs[1]).start()
    try:
        await serial_is(hengyang, 10)
        trust = hengyang.fed.trust
        partners, keys = trust.partners, trust.keys
        good = world.authority.sign(world.base, serial=12)
        rogue = DirectoryAuthority(world.authority.folder.parent / "rogue")  # same id, other key
        now = time.time()
        fewer = world.base[:2]
        offered = {
            # One byte of the payload changed after signing.
            "bad_signature": tampered(good),
            # Signed by a key the node was never given (an authority of the same name).
            "directory_unknown_key": rogue.sign(fewer, serial=13),
            # Its time is over.
            "directory_stale": world.authority.sign(
                fewer, serial=14, now=now - 8 * DAY, lifetime=7 * DAY
            ),
            # An older directory offered again.
            "directory_replayed": world.authority.sign(fewer, serial=9),
        }
        for code, token in offered.items():
            world.authority.publish(token)
            assert await follower(hengyang).refresh() == code
            assert trust.partners is partners and trust.keys is keys  # nothing applied
            assert trust.directory is not None and trust.directory.serial == 10
            assert load_status(hengyang.config).last_error == code
            text = await metrics(hengyang)
            assert f'tongban_directory_last_error{{code="{code}"}} 1.0' in text
            assert "tongban_directory_serial 10.0" in text
            checks = [c for c in await run_checks(hengyang.config) if c.name == "directory"]
            assert checks[0].level == "warn" and code in checks[0].message
        # The same serial with other content is a replay too.
        world.authority.publish(world.authority.sign(fewer, serial=10))
        assert await follower(hengyang).refresh() == "directory_replayed"
        assert trust.partners is partners

        # The authority's regions are all still partners; a good newer one applies.
        assert set(trust.partners) == {e.region for e in world.base} - {"430400"}
        world.authority.publish(world.authority.sign(fewer, serial=15))
        assert await follower(hengyang).refresh() == "applied"
        assert set(trust.partners) == {"430523"}  # removals apply too
        assert load_status(hengyang.config).last_error is None
        checks = [c for c in await run_checks(hengyang.config) if c.name == "directory"]
        assert checks[0].level == "ok" and "serial 15" in checks[0].message
    finally:
        await hengyang.stop()


async def test_an_unchanged_directory_costs_a_304(world: World) -> None:
    hengyang = await RunningNode(world.configs[1]).start()
    try:
        await serial_is(hengyang, 10)
        before = hengyang.fed.trust.partners
        assert await follower(hengyang).refresh() == "not_modified"
        assert await follower(hengyang).refresh() == "not_modified"
        assert hengyang.fed.trust.partners is before
        text = await metrics(hengyang)
        assert 'tongban_directory_fetches_total{result="not_modified"} 2.0' in text
        # The server answers 304 to the ETag it gave, and the body to anyone else.
        async with aiohttp.ClientSession() as http:
            async with http.get(world.server.url) as resp:
                etag = resp.headers["ETag"]
                assert resp.status == 200 and resp.content_type == "application/jose"
            async with http.get(world.server.url, headers={"If-None-Match": etag}) as resp:
                assert resp.status == 304 and await resp.read() == b""
            async with http.get(world.server.url, headers={"If-None-Match": '"x"'}) as resp:
                assert resp.status == 200
        assert load_status(hengyang.config).etag == etag
    finally:
        await hengyang.stop()


# -- precedence, own region, restart, expiry ----------------------------------------------------


async def test_partners_toml_wins_over_the_directory(world: World) -> None:
    hengyang_config = world.configs[1]
    other = world.base[2]
    # 衡阳市's admin lists that region by hand with another URL and another key.
    public = generate_private_key().public_key()
    local_key = TrustedKey(
        kid=key_id(other.region, public),
        region=other.region,
        public_key=public,
        not_before=utc(time.time() - DAY),
        not_after=utc(time.time() + DAY),
    )
    local = Partner(
        region=other.region, name="本地配置", url="https://local.example", keys=(local_key,)
    )
    hengyang_config.partners_file.write_text(render_partners([local]), encoding="utf-8")
    hengyang = await RunningNode(hengyang_config).start()
    try:
        await serial_is(hengyang, 10)
        trust = hengyang.fed.trust
        assert trust.partner(other.region) == local
        assert trust.sources[other.region] == "partners.toml"
        assert trust.keys.get(local_key.kid) is not None
        assert trust.keys.get(other.keys[0].kid) is None  # the directory's key is not used
        assert trust.sources["430523"] == "directory"
        assert "430400" not in trust.partners  # its own entry is never a partner

        # Once the local entry goes, the directory's applies (partners.toml is watched).
        hengyang_config.partners_file.write_text(render_partners([]), encoding="utf-8")

        async def from_directory() -> bool:
            return trust.sources.get(other.region) == "directory"

        await wait_until(from_directory)
        assert trust.partner(other.region).url == other.url  # type: ignore[union-attr]
        assert trust.keys.get(local_key.kid) is None
    finally:
        await hengyang.stop()


async def test_the_directory_in_force_survives_a_restart_and_ends_when_it_expires(
    world: World,
) -> None:
    config = world.configs[1]
    hengyang = await RunningNode(config).start()
    try:
        await serial_is(hengyang, 10)
    finally:
        await hengyang.stop()
    world.server.stop()  # the authority is unreachable from now on

    hengyang = await RunningNode(config).start()
    try:
        trust = hengyang.fed.trust
        assert trust.directory is not None and trust.directory.serial == 10
        assert "430523" in trust.partners
        assert await follower(hengyang).refresh() == "fetch_failed"
        assert trust.directory is not None and trust.directory.serial == 10
        checks = [c for c in await run_checks(config) if c.name == "directory"]
        assert checks[0].level == "warn" and "fetch_failed" in checks[0].message

        # A directory that runs out a few seconds from now: in force until then, then gone.
        short = world.authority.sign(
            world.base, serial=20, now=time.time() - 7 * DAY + 3 - 300, lifetime=7 * DAY
        )
        assert await follower(hengyang).offer(short.encode()) == "applied"
        assert trust.directory is not None and trust.directory.serial == 20
        await asyncio.sleep(4)
        # The next round drops it (and the authority is still unreachable).
        assert await follower(hengyang).refresh() == "fetch_failed"
        assert trust.directory is None
        assert trust.partners == {}
        text = await metrics(hengyang)
        assert "tongban_directory_serial 0.0" in text
        assert "tongban_directory_age_seconds -1.0" in text
        # With none in force, an older directory is still refused; a newer one applies.
        older = world.authority.sign(world.base, serial=19)
        assert await follower(hengyang).offer(older.encode()) == "directory_replayed"
        assert trust.directory is None
        newer = world.authority.sign(world.base, serial=21)
        assert await follower(hengyang).offer(newer.encode()) == "applied"
        assert trust.directory is not None and "430523" in trust.partners
        # ... and runs out as quickly for the rest of this test.
        short = world.authority.sign(
            world.base, serial=22, now=time.time() - 7 * DAY + 1 - 300, lifetime=7 * DAY
        )
        assert await follower(hengyang).offer(short.encode()) == "applied"
        await asyncio.sleep(2)
        assert await follower(hengyang).refresh() == "fetch_failed"
        assert trust.directory is None
    finally:
        await hengyang.stop()
    # After a restart the expired directory kept on disk is not put in force either.
    found = report(config, time.time())
    assert found.in_force is None and found.kept_refused == "directory_stale"
    checks = [c for c in await run_checks(config) if c.name == "directory"]
    assert checks[0].level == "fail" and "directory_stale" in checks[0].message
    status = await asyncio.to_thread(run_cli, "directory", "status", "--dir", str(config.dir))
    assert status.returncode == 1
    assert "directory_stale" in status.stdout
