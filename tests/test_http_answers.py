"""A remote party's answer is read with a bound (node/http_answers.py): a hostile partner that
answers with an endless body, or announces a huge one, is refused without this node holding
it; an answer that arrives in pieces is read whole. A catalogue fetch to a partner whose
network drops our SYNs gives up after its own connect timeout."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from node.config import FederationSettings
from node.federation import client as client_module
from node.federation.client import MAX_ANSWER_BYTES, PartnerClient, TransportError
from node.http_answers import read_answer
from protocol.catalog import MAX_CATALOG_BYTES
from tests.support.nodes import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """A partner on loopback whose every answer ``handler`` writes."""

    def __init__(self, handler: Handler) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        self.runner = web.AppRunner(app)

    async def __aenter__(self) -> Server:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[PartnerClient]:
    partners = PartnerClient(identity=None, blobs=None, settings=FederationSettings())  # type: ignore[arg-type]
    await partners.start()
    yield partners
    await partners.close()


async def test_an_endless_answer_is_cut_off_at_the_bound(client: PartnerClient) -> None:
    written: list[int] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)  # chunked: no length announced
        await response.prepare(request)
        try:
            for _ in range(100_000):  # 6 GB if nobody stopped reading
                await response.write(b"x" * 65536)
                written.append(65536)
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away: what we want
        return response

    async with Server(endless) as partner:
        with pytest.raises(TransportError, match=r"^answer_too_large: HTTP 200, over 65536 bytes"):
            await client.post_envelope(partner.url, "a.b.c")
        await asyncio.sleep(0.2)
    # The client stopped reading just past the bound (socket buffers hold a little more).
    assert sum(written) < 64 * 1024 * 1024


async def test_a_huge_announced_answer_is_refused_before_reading(client: PartnerClient) -> None:
    release = asyncio.Event()

    async def announced(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_length = MAX_CATALOG_BYTES + 1
        await response.prepare(request)
        await response.write(b"{")
        await release.wait()  # the rest never comes while the client waits
        return response

    async with Server(announced) as partner:
        try:
            with pytest.raises(TransportError, match=r"^answer_too_large"):
                await asyncio.wait_for(client.get_catalog(partner.url), 10)
        finally:
            release.set()


async def test_a_catalogue_may_be_longer_than_other_answers(client: PartnerClient) -> None:
    body = b"x" * (MAX_ANSWER_BYTES * 4)

    async def large(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body)

    async with Server(large) as partner:
        assert await client.get_catalog(partner.url) == body
        with pytest.raises(TransportError, match=r"^answer_too_large"):
            await client.get_descriptor(partner.url)


async def test_an_answer_that_arrives_in_pieces_is_read_whole() -> None:
    """``content.read(n)`` returns what has arrived so far; ``read_answer`` waits for the end
    (the identity provider's JWKS once came in two TCP segments over a real network)."""

    async def pieces(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b'{"keys": [')
        await asyncio.sleep(0.2)
        await response.write(b'{"kid": "k1"}]}')
        return response

    async with Server(pieces) as partner, aiohttp.ClientSession() as http:
        async with http.get(partner.url + "/jwks") as resp:
            assert await read_answer(resp, 1024) == b'{"keys": [{"kid": "k1"}]}'
        async with http.get(partner.url + "/jwks") as resp:
            assert await read_answer(resp, 16) is None


async def test_a_catalogue_fetch_gives_up_connecting_after_its_own_timeout(
    client: PartnerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresher's slots must not wait out the session's 10 s for every partner that is
    down behind a network that drops SYNs (node/catalog/refresher.py)."""
    monkeypatch.setattr(client_module, "CATALOG_CONNECT_TIMEOUT", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)  # never accepts: once its one place is taken, SYNs are dropped
        port = silent.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port)),  # takes the place
            pytest.raises(TransportError, match=r"ConnectionTimeoutError|TimeoutError"),
        ):
            await asyncio.wait_for(
                client.get_catalog_if_changed(f"http://127.0.0.1:{port}", None), 5
            )
