"""The bare aiohttp baseline: a process that answers every POST with its body, and a client
that sends payloads with a fixed number in flight.

    python -m bench.echo --port 8499          # serve (GET /healthz answers "ok")
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import aiohttp
from aiohttp import web


def make_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body, content_type="application/jose")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.router.add_post("/federation/v1/envelopes", echo)
    app.router.add_get("/healthz", healthz)
    return app


async def run_client(
    url: str, payloads: Sequence[bytes], *, concurrency: int, connection_limit: int
) -> dict[str, float]:
    """POST every payload to ``url``, ``concurrency`` requests in flight (a sliding window);
    returns wall seconds, requests/s and the client's CPU seconds."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=connection_limit)
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    headers = {"Content-Type": "application/jose", "Accept": "application/jose"}
    failures = 0
    next_index = 0

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Warm the connections up outside the measurement.
        await asyncio.gather(
            *(_post(session, url, payloads[0], headers) for _ in range(concurrency))
        )

        async def worker() -> None:
            nonlocal next_index, failures
            while next_index < len(payloads):
                payload = payloads[next_index]
                next_index += 1
                if not await _post(session, url, payload, headers):
                    failures += 1

        cpu0 = time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    return {
        "requests": len(payloads),
        "failures": failures,
        "wall_s": wall,
        "requests_per_s": len(payloads) / wall,
        "client_cpu_s": cpu,
    }


async def _post(
    session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]
) -> bool:
    async with session.post(url, data=payload, headers=headers) as resp:
        body = await resp.read()
        return resp.status == 200 and len(body) == len(payload)


def main() -> None:
    parser = argparse.ArgumentParser(description="aiohttp echo server (the bench baseline)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
