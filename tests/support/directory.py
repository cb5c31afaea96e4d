"""A directory authority for tests: its key (made at run time), the signed directory it
publishes into a file, and `tongban directory serve` on that file as a real process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from node.config import NodeConfig
from node.federation.directory_authority import (
    Authority,
    init_authority,
    signed_directory,
    unsigned_directory,
)
from node.federation.partners import Partner
from node.provisioning import init_node, self_entry
from protocol.directory import DirectoryEntry
from protocol.keys import TrustedKey, generate_private_key, key_id, utc
from tests.support.databases import DatabaseFactory
from tests.support.nodes import free_port

AUTHORITY = "430000"
DAY = 24 * 3600


def entry_of(partner: Partner) -> DirectoryEntry:
    return DirectoryEntry(
        region=partner.region, name=partner.name, url=partner.url, keys=partner.keys
    )


def synthetic_entries(count: int, *, first: int = 500000) -> list[DirectoryEntry]:
    """``count`` regions with fresh keys and HTTPS URLs nothing answers at."""
    now = time.time()
    out = []
    for number in range(first, first + count):
        region = str(number)
        public = generate_private_key().public_key()
        key = TrustedKey(
            kid=key_id(region, public),
            region=region,
            public_key=public,
            not_before=utc(now - DAY),
            not_after=utc(now + 365 * DAY),
        )
        out.append(
            DirectoryEntry(
                region=region,
                name=f"测试区{number}",
                url=f"https://r{number}.tongban.example",
                keys=(key,),
            )
        )
    return out


@dataclass
class DirectoryAuthority:
    folder: Path
    authority: Authority = field(init=False)
    #: The file `tongban directory serve` serves.
    served: Path = field(init=False)

    def __post_init__(self) -> None:
        self.authority = init_authority(self.folder, AUTHORITY)
        self.served = self.folder / "directory.jwt"

    @property
    def public_key(self) -> str:
        return self.authority.public_key

    def sign(
        self,
        entries: list[DirectoryEntry],
        serial: int,
        *,
        now: float | None = None,
        lifetime: int = 7 * DAY,
    ) -> str:
        return signed_directory(
            self.authority,
            unsigned_directory(entries),
            serial=serial,
            now=time.time() if now is None else now,
            lifetime=lifetime,
        )

    def publish(self, token: str) -> None:
        """What the server answers from now on (replaced atomically)."""
        tmp = self.served.with_name("directory.tmp")
        tmp.write_text(token, encoding="ascii")
        tmp.replace(self.served)


class DirectoryServerProcess:
    """`python -m node.cli directory serve` on ``file``."""

    def __init__(self, file: Path, log: Path) -> None:
        self.file = file
        self.port = free_port()
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/directory"

    async def start(self, timeout: float = 30.0) -> DirectoryServerProcess:
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "node.cli",
                    "directory",
                    "serve",
                    "--file",
                    str(self.file),
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"directory server exited: {self.proc.returncode}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("directory server did not come up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def directory_toml(url: str, authority_keys: list[str], *, refresh: float = 3600) -> str:
    keys = ", ".join(f'"{k}"' for k in authority_keys)
    return (
        f'[directory]\nurl = "{url}"\nauthority = "{AUTHORITY}"\n'
        f"authority_keys = [{keys}]\nrefresh = {refresh}\n"
    )


#: Delivery settings of the directory tests: fast retries, but idle partner queues (one per
#: directory region) poll rarely.
FEDERATION_TOML = """
[federation]
initial_backoff = 0.05
max_backoff = 1.0
poll_interval = {poll}
"""


async def directory_nodes(
    tmp: Path,
    databases: DatabaseFactory,
    regions: list[tuple[str, str]],
    directory: str,
    *,
    poll: float = 0.05,
    refresh: float = 3600,
) -> list[NodeConfig]:
    """Nodes that follow ``directory`` (partners.toml empty: no pairwise exchange)."""
    configs = []
    for region, name in regions:
        configs.append(
            await init_node(
                tmp / region,
                region=region,
                name=name,
                port=free_port(),
                database_url=await databases.new_url(region),
                extra_toml=FEDERATION_TOML.format(poll=poll) + directory,
            )
        )
    return configs


async def entries_of(configs: list[NodeConfig]) -> list[DirectoryEntry]:
    return [entry_of(await self_entry(c)) for c in configs]


def with_directory(config: NodeConfig, directory: str) -> NodeConfig:
    """``config`` with a ``[directory]`` table added to its tongban.toml."""
    path = config.dir / "tongban.toml"
    path.write_text(path.read_text(encoding="utf-8") + directory, encoding="utf-8")
    return NodeConfig.load(config.dir)
