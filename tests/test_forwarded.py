"""The client address behind the TLS proxy: X-Forwarded-For believed only from trusted proxies
(``[http] trusted_proxies``), walked right to left; rate limits key on that address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.appkeys import CITIZEN_LIMITER
from node.config import ConfigError, NodeConfig
from node.forwarded import client_address, parse_networks
from node.provisioning import init_node
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, free_port

PROXIES = parse_networks(["127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"])


def test_header_is_ignored_from_an_untrusted_peer() -> None:
    assert client_address("203.0.113.9", ["198.51.100.1"], PROXIES) == "203.0.113.9"
    assert client_address("203.0.113.9", [], PROXIES) == "203.0.113.9"
    assert client_address("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"  # none trusted


def test_header_is_walked_right_to_left_skipping_trusted_hops() -> None:
    # client -> 10.1.1.1 (an inner proxy) -> nginx 127.0.0.1 -> node
    assert client_address("127.0.0.1", ["198.51.100.7, 10.1.1.1"], PROXIES) == "198.51.100.7"
    # What the client wrote itself (left of the first untrusted hop) is never believed.
    spoofed = ["6.6.6.6, 198.51.100.7", "10.1.1.1"]  # two header lines count as one list
    assert client_address("127.0.0.1", spoofed, PROXIES) == "198.51.100.7"
    # Every hop trusted: the leftmost one.
    assert client_address("127.0.0.1", ["10.2.2.2, 10.1.1.1"], PROXIES) == "10.2.2.2"
    # Garbage ends the walk at the last hop read.
    assert client_address("127.0.0.1", ["198.51.100.7, junk, 10.1.1.1"], PROXIES) == "10.1.1.1"
    assert client_address("127.0.0.1", ["junk"], PROXIES) == "127.0.0.1"
    # Ports and IPv6 forms.
    assert client_address("127.0.0.1", ["198.51.100.7:5123"], PROXIES) == "198.51.100.7"
    assert client_address("2001:db8::1", ["[2001:db9::5]:443"], PROXIES) == "2001:db9::5"
    assert client_address("::ffff:127.0.0.1", ["198.51.100.8"], PROXIES) == "198.51.100.8"


def test_trusted_proxies_are_checked(tmp_path: Path) -> None:
    base = {"region": "430400", "name": "衡阳市", "url": "https://x"}
    config = NodeConfig.from_dict(tmp_path, {**base, "http": {"trusted_proxies": ["10.0.0.0/8"]}})
    assert config.http.trusted_proxies == ("10.0.0.0/8",)
    for http, message in [
        ({"trusted_proxies": ["nginx"]}, "not a network"),
        ({"trusted_proxies": ["172.30.240.5/24"]}, "host bits"),
        ({"trusted_proxies": ["0.0.0.0/0"]}, "every client"),
        ({"trusted_proxies": ["::/0"]}, "every client"),
        ({"trusted_proxies": "127.0.0.1"}, "a list"),
        ({"proxies": []}, "unknown \\[http\\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            NodeConfig.from_dict(tmp_path, {**base, "http": http})


async def start_node(tmp_path: Path, databases: DatabaseFactory, proxies: str) -> RunningNode:
    config = await init_node(
        tmp_path / "430400",
        region="430400",
        name="衡阳市",
        port=free_port(),
        database_url=await databases.new_url("430400"),
        extra_toml=f"[http]\ntrusted_proxies = {proxies}\n",
    )
    return await RunningNode(config).start()


@pytest.fixture
async def node_factory(
    tmp_path: Path, databases: DatabaseFactory
) -> AsyncIterator[list[RunningNode]]:
    started: list[RunningNode] = []
    yield started
    for node in started:
        await node.stop()


async def queries(node: RunningNode, forwarded: list[str]) -> list[int]:
    """Citizen queries of unknown case numbers (each its own case key), one per header."""
    statuses = []
    async with aiohttp.ClientSession() as http:
        for n, header in enumerate(forwarded):
            async with http.get(
                f"{node.url}/api/v1/public/cases/HY-NOPE-{n}",
                params={"code": "123456"},
                headers={"X-Forwarded-For": header},
            ) as resp:
                statuses.append(resp.status)
    return statuses


async def test_spoofed_header_from_an_untrusted_peer_does_not_change_the_rate_limit_key(
    tmp_path: Path, databases: DatabaseFactory, node_factory: list[RunningNode]
) -> None:
    # The test client connects from 127.0.0.1, which is not a trusted proxy here.
    node = await start_node(tmp_path, databases, '["10.0.0.0/8"]')
    node_factory.append(node)
    assert node.app is not None
    limiter = node.app[CITIZEN_LIMITER]
    statuses = await queries(node, [f"198.51.100.{n}" for n in range(12)])
    assert statuses[:10] == [404] * 10 and statuses[10:] == [429, 429]
    assert limiter.check("ip:127.0.0.1") is False
    assert all(limiter.check(f"ip:198.51.100.{n}") for n in range(12))
    assert not any(key.startswith("ip:198.") for key in limiter._buckets)


async def test_header_from_a_trusted_proxy_gives_each_client_its_own_key(
    tmp_path: Path, databases: DatabaseFactory, node_factory: list[RunningNode]
) -> None:
    node = await start_node(tmp_path, databases, '["127.0.0.1/32"]')
    node_factory.append(node)
    assert node.app is not None
    limiter = node.app[CITIZEN_LIMITER]
    # Twelve citizens behind the proxy: none is limited by the others.
    assert await queries(node, [f"6.6.6.6, 198.51.100.{n}" for n in range(12)]) == [404] * 12
    assert "ip:127.0.0.1" not in limiter._buckets
    assert "ip:6.6.6.6" not in limiter._buckets  # what the client wrote is not believed
    assert limiter._buckets["ip:198.51.100.3"].tokens == pytest.approx(9, abs=0.1)
    # One citizen asking too often is limited on its own address.
    statuses = await queries(node, ["198.51.100.77"] * 11)
    assert statuses[:10] == [404] * 10 and statuses[10] == 429
    assert limiter.check("ip:198.51.100.77") is False
