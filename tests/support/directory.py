"""A directory authority for tests: its key (made at run time), the signed directory it
publishes into a file, and `tongban directory serve` on that file as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.config import NodeConfig
from node.federation.directory_authority import (
    Authority,
    init_authority,
    signed_directory,
    unsigned_directory,
)
from node.federation.partners import Partner
from node.provisioning import self_entry
from protocol.directory import DirectoryEntry
from tests.support.databases import DatabaseFactory
from tests.support.nodes import (
    FAST,
    federation_toml,
    free_port,
    make_configs,
    terminate,
    wait_healthy,
)
from tests.support.partners import DAY, fresh_key

AUTHORITY = "430000"


def entry_of(partner: Partner) -> DirectoryEntry:
    return DirectoryEntry(
        region=partner.region, name=partner.name, url=partner.url, keys=partner.keys
    )


def synthetic_entries(count: int, *, first: int = 500000, keys: int = 1) -> list[DirectoryEntry]:
    """``count`` regions with ``keys`` fresh keys each (two: a region in the middle of a
    rotation) and HTTPS URLs nothing answers at."""
    now = time.time()
    out = []
    for number in range(first, first + count):
        region = str(number)
        out.append(
            DirectoryEntry(
                region=region,
                name=f"测试区{number}",
                url=f"https://r{number}.tongban.example",
                keys=tuple(fresh_key(region, now=now) for _ in range(keys)),
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
        await wait_healthy(
            self.proc, f"http://127.0.0.1:{self.port}", "directory server", timeout=timeout
        )
        return self

    def stop(self) -> None:
        terminate(self.proc)


def directory_toml(url: str, authority_keys: list[str], *, refresh: float = 3600) -> str:
    keys = ", ".join(f'"{k}"' for k in authority_keys)
    return (
        f'[directory]\nurl = "{url}"\nauthority = "{AUTHORITY}"\n'
        f"authority_keys = [{keys}]\nrefresh = {refresh}\n"
    )


async def directory_nodes(
    tmp: Path,
    databases: DatabaseFactory,
    regions: list[tuple[str, str]],
    directory: str,
    *,
    poll: float = 0.05,
) -> list[NodeConfig]:
    """Nodes that follow ``directory`` (partners.toml empty: no pairwise exchange), with fast
    retries and a fallback scan every ``poll`` seconds."""
    return await make_configs(
        tmp,
        databases,
        regions,
        link=False,
        extra_toml=directory,
        federation=federation_toml(**{**FAST, "poll_interval": poll}),
    )


async def entries_of(configs: list[NodeConfig]) -> list[DirectoryEntry]:
    return [entry_of(await self_entry(c)) for c in configs]


def with_directory(config: NodeConfig, directory: str) -> NodeConfig:
    """``config`` with a ``[directory]`` table added to its tongban.toml."""
    path = config.dir / "tongban.toml"
    path.write_text(path.read_text(encoding="utf-8") + directory, encoding="utf-8")
    return NodeConfig.load(config.dir)
