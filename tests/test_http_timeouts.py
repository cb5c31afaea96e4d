"""`tongban run` served directly closes connections that hold it up: idle ones, headers that
never finish (slowloris) and bodies that stop arriving, each after the configured time
([http] keepalive_timeout, body_timeout; 2 s here). A real node process, raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.provisioning import init_node
from tests.support.databases import DatabaseFactory
from tests.support.nodes import NodeProcess, free_port

#: Far above the 2 s configured, far below aiohttp's defaults (75 s, and no body limit).
BOUND = 20.0


@pytest.fixture
async def node(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[NodeProcess]:
    config = await init_node(
        tmp_path / "430400",
        region="430400",
        name="衡阳市",
        port=free_port(),
        database_url=await databases.new_url("430400"),
        extra_toml="[http]\nkeepalive_timeout = 2\nbody_timeout = 2\n",
    )
    process = NodeProcess(config, tmp_path)
    await process.start()
    yield process
    process.stop()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (fails after BOUND).

    A server that closes while our bytes are still unread in its socket makes the kernel send
    a reset rather than an orderly end: that is a close too (the slowloris case, whose
    trickle keeps arriving)."""
    received = bytearray()

    async def until_closed() -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)

    with contextlib.suppress(ConnectionResetError):
        await asyncio.wait_for(until_closed(), timeout=BOUND)
    return bytes(received)


async def test_idle_connection_is_closed(node: NodeProcess) -> None:
    reader, writer = await asyncio.open_connection(node.config.host, node.config.port)
    try:
        assert await closed_by_server(reader) == b""
    finally:
        writer.close()


async def test_idle_keep_alive_connection_is_closed_after_a_request(node: NodeProcess) -> None:
    reader, writer = await asyncio.open_connection(node.config.host, node.config.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        answer = await closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_headers_that_never_finish_are_cut_off(node: NodeProcess) -> None:
    """Slowloris: a header line every half second, never the blank line."""
    reader, writer = await asyncio.open_connection(node.config.host, node.config.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for n in range(int(BOUND * 4)):
                writer.write(f"X-Slow-{n}: y\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.5)

    trickler = asyncio.create_task(trickle())
    try:
        answer = await closed_by_server(reader)
        assert b"200" not in answer.split(b"\r\n", 1)[0]
    finally:
        trickler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickler
        writer.close()


async def test_body_that_stops_arriving_is_cut_off(node: NodeProcess) -> None:
    reader, writer = await asyncio.open_connection(node.config.host, node.config.port)
    try:
        writer.write(
            b"POST /federation/v1/envelopes HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/jose\r\nContent-Length: 1000\r\n\r\neyJhbGciOi"
        )
        await writer.drain()
        await closed_by_server(reader)
    finally:
        writer.close()
    # The node still serves.
    reader, writer = await asyncio.open_connection(node.config.host, node.config.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
