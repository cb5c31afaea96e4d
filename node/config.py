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
    #: Longest claim on an outbox row, seconds. The lease actually taken is the smaller of this
    #: and 10 s, renewed while the send is in flight, so a crashed process's rows are sent
    #: again within seconds by a restarted process or another replica.
    claim_seconds: float = 120.0
    #: Idle poll interval of the outbox worker, seconds (new rows from this process wake it
    #: at once; rows written by other processes are seen within this delay).
    poll_interval: float = 0.25
    #: Re-issue an undelivered envelope this long before it expires, seconds.
    reissue_margin: float = 3600.0
    #: Plain HTTP to a partner is allowed only to loopback unless this is set.
    allow_plain_http: bool = False
    #: PEM bundle of extra CAs trusted for partners' HTTPS certificates (a private CA), on top
    #: of the system store; relative to the node directory.
    ca_file: str | None = None
    #: Largest blob accepted, bytes.
    max_blob_bytes: int = 200 * 1024 * 1024
    #: Request timeout towards partners, seconds.
    request_timeout: float = 30.0


@dataclass(frozen=True)
class InspectionSettings:
    """WebRTC for video inspections (``[inspection]`` in tongban.toml)."""

    #: STUN servers, e.g. ["stun:stun.example.org:3478"]; none needed on one network.
    stun_urls: tuple[str, ...] = ()
    #: TURN servers (coturn), e.g. ["turn:turn.example.org:3478?transport=udp"].
    turn_urls: tuple[str, ...] = ()
    #: Static TURN credentials, or ``turn_secret`` for coturn's time-limited ones
    #: (``use-auth-secret``): username "<expiry>:tongban", password HMAC-SHA1 of it.
    turn_username: str = ""
    turn_credential: str = ""
    turn_secret: str = ""
    #: ICE consent checks (RFC 7675): a peer that misses ``consent_failures`` checks in a row,
    #: one every ``consent_interval`` s (±20 %, each waiting 0.5 s for its answer), is dead:
    #: about 12 s, at most 14 s with these values (aioice's own default is 30 s). Lower values
    #: notice sooner but drop healthy peers on a starved CPU.
    consent_interval: float = 1.5
    consent_failures: int = 6


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
    inspection: InspectionSettings = field(default_factory=InspectionSettings)
    #: Serve HTTPS directly (certificate chain and key, PEM) instead of behind a TLS proxy.
    tls_cert: Path | None = None
    tls_key: Path | None = None

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
        if fed.get("ca_file"):
            fed = {**fed, "ca_file": str(base / str(fed["ca_file"]))}
        tls = {k: base / str(data[k]) for k in ("tls_cert", "tls_key") if data.get(k)}
        if len(tls) == 1:
            raise ConfigError("tls_cert and tls_key go together: set both or neither")
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
            inspection=_inspection_settings(data.get("inspection", {})),
            tls_cert=tls.get("tls_cert"),
            tls_key=tls.get("tls_key"),
        )


def plain_http_refused(url: str, settings: FederationSettings) -> str | None:
    """Why a partner URL may not be used, or None: HTTPS always; plain HTTP only to loopback
    unless ``[federation] allow_plain_http = true``. The text starts with a stable code."""
    scheme = urlsplit(url).scheme
    if scheme == "https":
        return None
    if scheme == "http" and (is_loopback_url(url) or settings.allow_plain_http):
        return None
    if scheme == "http":
        return (
            f"plain_http_refused: {url} 不是本机地址，须使用 HTTPS "
            "(or set [federation] allow_plain_http = true)"
        )
    return f"bad_partner_url: {url} 须以 https:// 开头"


def _inspection_settings(data: dict[str, Any]) -> InspectionSettings:
    known = InspectionSettings.__dataclass_fields__
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown [inspection] settings: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return InspectionSettings(**values)


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
