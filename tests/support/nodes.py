"""Nodes for tests: in this process on real sockets, or as real `tongban run` processes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from node.app import create_app
from node.appkeys import FEDERATION
from node.config import NodeConfig
from node.federation.identity import NodeIdentity
from node.federation.outbox import Outbox, Queued
from node.federation.runtime import Federation
from node.provisioning import init_node, link_all
from node.storage.database import Database
from node.storage.sealing import load_sealer
from tests.support.databases import DatabaseFactory, using_postgres


def federation_toml(**settings: float) -> str:
    """A ``[federation]`` table of tongban.toml with ``settings``."""
    return "\n[federation]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


#: Fast retries and a fast fallback scan.
FAST = {"initial_backoff": 0.05, "max_backoff": 1.0, "poll_interval": 0.05}
FAST_FEDERATION = federation_toml(**FAST)


#: Ports handed to test nodes come from below Linux's ephemeral range (32768-60999), so an
#: outgoing connection (to PostgreSQL, between nodes, from the browser) cannot take a port
#: between the moment it is chosen and the moment the node binds it. The suite on SQLite and
#: the suite on PostgreSQL run at the same time (scripts/test): each has its own half, so
#: neither can choose a port the other has chosen and not bound yet.
_PORTS = range(26000, 32000) if using_postgres() else range(20000, 26000)
_given: set[int] = set()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, not given out before by this process."""
    for _ in range(200):
        port = random.choice(_PORTS)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


async def make_configs(
    tmp: Path,
    databases: DatabaseFactory,
    regions: list[tuple[str, str]],
    *,
    link: bool = True,
    extra_toml: str = "",
    federation: str = FAST_FEDERATION,
) -> list[NodeConfig]:
    """A node for each (region, name), on a free port with a fresh database; ``federation``
    and ``extra_toml`` are added to its tongban.toml. With ``link``, all partner each other."""
    configs = []
    for region, name in regions:
        configs.append(
            await init_node(
                tmp / region,
                region=region,
                name=name,
                port=free_port(),
                database_url=await databases.new_url(region, migrated=True),
                extra_toml=federation + extra_toml,
            )
        )
    if link:
        await link_all(configs)
    return configs


@dataclass
class RunningNode:
    """A node served by this test process on a real TCP port."""

    config: NodeConfig
    runner: web.AppRunner | None = None
    app: web.Application | None = None

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def fed(self) -> Federation:
        assert self.app is not None
        return self.app[FEDERATION]

    @property
    def db(self) -> Database:
        return self.fed.db

    async def start(self) -> RunningNode:
        self.app = create_app(self.config)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.config.host, self.config.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            try:
                await asyncio.wait_for(self.runner.cleanup(), timeout=90)
            except TimeoutError:
                # A shutdown that hangs is a bug: show where every task waits, then fail.
                for task in asyncio.all_tasks():
                    task.print_stack(file=sys.stderr)
                raise
            self.runner = None
            self.app = None

    async def send(
        self, partner: str, typ: str, xt: str, body: dict[str, Any], **kw: Any
    ) -> Queued:
        async with self.db.write() as conn:
            return await self.fed.outbox.enqueue(
                conn, partner=partner, typ=typ, xt=xt, body=body, **kw
            )


async def wait_healthy(
    proc: subprocess.Popen[bytes], url: str, name: str, *, timeout: float
) -> None:
    """Poll ``url``/healthz until it answers 200; fail when ``proc`` (``name`` in the
    message) exits first, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {proc.returncode}")
            try:
                async with session.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} did not come up")


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM to ``proc`` if it runs, and SIGKILL if it has not exited 10 s later."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class NodeProcess:
    """`python -m node.cli run` in a child process, killable with SIGKILL."""

    def __init__(self, config: NodeConfig, log_dir: Path) -> None:
        self.config = config
        self._log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def label(self) -> str:
        """What the errors of ``start`` call it."""
        return f"node {self.config.region}"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "node.cli", "run", "--dir", str(self.config.dir)]

    async def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        log = open(self._log_dir / f"{self.config.region}-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        await wait_healthy(self.proc, self.url, self.label, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        terminate(self.proc)


@dataclass
class OfflineSender:
    """Writes a node's outbox from the test process (its own DB handle and key), as the case
    domain of that node would; the node's process delivers."""

    config: NodeConfig
    db: Database = field(init=False)
    outbox: Outbox = field(init=False)

    async def open(self) -> OfflineSender:
        self.db = Database(self.config.database_url)
        identity = await NodeIdentity.load(self.config, self.db)
        self.outbox = Outbox(
            identity, wake=lambda _partner: None, sealer=load_sealer(self.config.dir)
        )
        return self

    async def close(self) -> None:
        await self.db.dispose()
