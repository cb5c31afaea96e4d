"""The one config object of a node, read from ``DIR/tongban.toml``."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONFIG_FILE = "tongban.toml"
KEY_FILE = "node.key"
PARTNERS_FILE = "partners.toml"
DATABASE_FILE = "tongban.db"


class ConfigError(Exception):
    """The config file is missing or wrong; the message says what to fix."""


@dataclass(frozen=True)
class FederationSettings:
    #: Envelopes in flight to one partner at once.
    window: int = 32
    #: First retry delay after a failure, seconds; doubles per failure up to ``max_backoff``.
    initial_backoff: float = 0.5
    #: Backoff cap, seconds. Minutes, not days: a partner back from an outage must hear from
    #: us soon, or the federation quietly falls apart.
    max_backoff: float = 300.0
    #: How long a claimed outbox row stays ours before another replica may take it, seconds.
    claim_seconds: float = 120.0
    #: Idle poll interval of the outbox worker, seconds (new rows from this process wake it
    #: at once; rows written by other processes are seen within this delay).
    poll_interval: float = 0.25
    #: Re-issue an undelivered envelope this long before it expires, seconds.
    reissue_margin: float = 3600.0
    #: Plain HTTP to a partner is allowed only to loopback unless this is set.
    allow_plain_http: bool = False
    #: Largest blob accepted, bytes.
    max_blob_bytes: int = 200 * 1024 * 1024
    #: Request timeout towards partners, seconds.
    request_timeout: float = 30.0


@dataclass(frozen=True)
class NodeConfig:
    dir: Path
    region: str
    name: str
    url: str
    database_url: str
    blob_dir: Path
    host: str = "127.0.0.1"
    port: int = 8400
    federation: FederationSettings = field(default_factory=FederationSettings)

    @property
    def key_file(self) -> Path:
        return self.dir / KEY_FILE

    @property
    def retired_key_dir(self) -> Path:
        return self.dir / "keys"

    @property
    def partners_file(self) -> Path:
        return self.dir / PARTNERS_FILE

    @classmethod
    def load(cls, directory: Path | str) -> NodeConfig:
        base = Path(directory).resolve()
        path = base / CONFIG_FILE
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path} not found: run `tongban init` first") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        return cls.from_dict(base, data)

    @classmethod
    def from_dict(cls, base: Path, data: dict[str, Any]) -> NodeConfig:
        try:
            region = str(data["region"])
            name = str(data["name"])
            url = str(data["url"]).rstrip("/")
        except KeyError as exc:
            raise ConfigError(f"tongban.toml lacks {exc.args[0]}") from exc
        database_url = str(
            data.get("database_url") or f"sqlite+aiosqlite:///{base / DATABASE_FILE}"
        )
        blob_dir = Path(str(data.get("blob_dir", "blobs")))
        fed = data.get("federation", {})
        known = FederationSettings.__dataclass_fields__
        unknown = set(fed) - set(known)
        if unknown:
            raise ConfigError(f"unknown [federation] settings: {', '.join(sorted(unknown))}")
        return cls(
            dir=base,
            region=region,
            name=name,
            url=url,
            database_url=database_url,
            blob_dir=blob_dir if blob_dir.is_absolute() else base / blob_dir,
            host=str(data.get("host", "127.0.0.1")),
            port=int(data.get("port", 8400)),
            federation=FederationSettings(**fed),
        )


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
