"""A video session's participants meet on the replica that holds its peer connections: the
region's nginx (docker/nginx/region.conf.template, run by this machine's nginx) sends every URL
of one session — pages, signalling WebSocket and session API — to the same replica, and every
URL of 视频办 (one queue per hall) to one replica."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.nginx import make_certs, nginx_config
from tests.support.nodes import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("openssl") is None,
    reason="needs nginx and openssl (the topology of docker/compose.yaml)",
)

#: Every URL of one session, as the pages and the console call them.
SESSION_URLS = [
    ("GET", "/inspection/{sid}/join"),
    ("GET", "/inspection/{sid}/console"),
    ("GET", "/inspection/v1/sessions/{sid}"),
    ("POST", "/inspection/v1/sessions/{sid}/snapshots"),
    ("PUT", "/inspection/v1/sessions/{sid}/checklist/0"),
    ("POST", "/inspection/v1/sessions/{sid}/end"),
    ("GET", "/inspection/v1/sessions/{sid}/evidence"),
]


def replica_app(name: str) -> web.Application:
    """Stands in for one `tongban run` replica: says who answered, on HTTP and WebSocket."""

    async def any_route(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/ws"):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_json({"replica": name})
            await ws.close()
            return ws
        return web.json_response({"replica": name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_route)
    return app


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    certs = tmp_path / "certs"
    make_certs(certs)
    port, http_port = free_port(), free_port()
    replicas = [free_port(), free_port()]
    runners = []
    for name, replica_port in zip(("a", "b"), replicas, strict=True):
        runner = web.AppRunner(replica_app(name))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", replica_port).start()
        runners.append(runner)
    conf = nginx_config(tmp_path / "nginx", certs, port, http_port, replicas)
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path / "nginx"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"https://localhost:{port}"
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    try:

        async def listening() -> bool:
            assert nginx.poll() is None, "nginx exited"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            return True

        await wait_until(listening, timeout=20)
        yield base, context
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        for runner in runners:
            await runner.cleanup()


async def test_every_url_of_a_session_reaches_one_replica(
    proxy: tuple[str, ssl.SSLContext],
) -> None:
    base, context = proxy
    holders: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(24):
            sid = str(uuid.uuid4())
            answered = set()
            for method, path in SESSION_URLS:
                async with http.request(method, base + path.format(sid=sid), ssl=context) as resp:
                    assert resp.status == 200, (method, path)
                    answered.add((await resp.json())["replica"])
            async with http.ws_connect(f"{base}/inspection/{sid}/ws", ssl=context) as ws:
                answered.add((await ws.receive_json())["replica"])
            assert len(answered) == 1, (sid, answered)
            holders[sid] = answered.pop()
    # The hash spreads sessions over both replicas (24 sessions on one: odds 2 in 2^24).
    assert set(holders.values()) == {"a", "b"}


#: 视频办's URLs: the queue, the citizen's socket, the desk and a call's API.
VIDEO_URLS = [
    ("GET", "/video"),
    ("POST", "/video/v1/calls"),
    ("GET", "/video/desk"),
    ("GET", "/video/v1/queue"),
    ("POST", "/video/v1/calls/{sid}/pick"),
    ("POST", "/video/v1/calls/{sid}/end"),
    ("GET", "/video/figures"),
]


async def test_every_video_call_url_reaches_the_one_replica_that_holds_the_queue(
    proxy: tuple[str, ssl.SSLContext],
) -> None:
    base, context = proxy
    answered = set()
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            sid = str(uuid.uuid4())
            for method, path in VIDEO_URLS:
                async with http.request(method, base + path.format(sid=sid), ssl=context) as resp:
                    assert resp.status == 200, (method, path)
                    answered.add((await resp.json())["replica"])
            async with http.ws_connect(f"{base}/video/v1/calls/{sid}/ws", ssl=context) as ws:
                answered.add((await ws.receive_json())["replica"])
    assert answered == {"a"}
