"""The one config object of a node, read from ``DIR/tongban.toml``."""

from __future__ import annotations

import functools
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node.cases.deadlines import DEFAULT_DEFERRED_DAYS, DEFAULT_RECTIFICATION_DAYS
from node.identity.config import IdentityConfigError, IdentitySettings, identity_settings
from node.videocalls.settings import VideoCallSettings, video_call_settings
from protocol.directory import AuthorityKey

CONFIG_FILE = "tongban.toml"
KEY_FILE = "node.key"
PARTNERS_FILE = "partners.toml"
DATABASE_FILE = "tongban.db"


class ConfigError(Exception):
    """The config file is missing or wrong; the message says what to fix."""


@dataclass(frozen=True)
class FederationSettings:
    #: Envelopes in flight to one partner at once, one connection each. 256 keeps both ends
    #: of a burst busy on a 2-core machine (128: about 15 % fewer envelopes a second;
    #: bench/README.md, "Taking turns"); the node raises its open-files limit for them
    #: (node/fdlimit.py) and docker/nginx/nginx.conf allows 16,384 connections per worker.
    window: int = 256
    #: First retry delay after a failure, seconds; doubles per failure up to ``max_backoff``.
    initial_backoff: float = 0.5
    #: Backoff cap, seconds. Minutes, not days: a partner back from an outage must hear from
    #: us soon, or the federation quietly falls apart.
    max_backoff: float = 300.0
    #: Longest claim on an outbox row, seconds. The lease actually taken is the smaller of this
    #: and 10 s, renewed while the send is in flight, so a crashed process's rows are sent
    #: again within seconds by a restarted process or another replica.
    claim_seconds: float = 120.0
    #: Interval of the delivery scheduler's fallback scan, seconds: one query for all
    #: partners (commits in this process, NOTIFY from replicas on PostgreSQL, due times and
    #: inbound traffic wake a partner's sender at once; rows no wake-up announced, such as
    #: those written by another process on SQLite, are seen within this delay).
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


BLOB_BACKENDS = ("folder", "s3")


@dataclass(frozen=True)
class BlobSettings:
    """Where blobs live (``[blobs]`` in tongban.toml): the shared folder ``blob_dir`` (default)
    or an S3-compatible bucket. Credentials are never in tongban.toml: ``credentials_file``
    (TOML with ``access_key_id`` and ``secret_access_key``, mode 0600), else the environment
    variables ``TONGBAN_S3_ACCESS_KEY_ID`` / ``TONGBAN_S3_SECRET_ACCESS_KEY``, else botocore's
    own chain (``AWS_ACCESS_KEY_ID``…, instance role)."""

    backend: str = "folder"
    #: e.g. "https://oss-cn-hangzhou.aliyuncs.com" or "http://minio:9000"; none = AWS.
    endpoint_url: str | None = None
    bucket: str = ""
    region: str = "us-east-1"
    #: Put in front of every key, e.g. "430400/" (several regions in one bucket).
    prefix: str = ""
    #: "path" (bucket in the URL path; what most S3-compatible servers expect), "virtual"
    #: (bucket as host name) or "auto".
    addressing_style: str = "path"
    #: Absolute, or relative to the node directory.
    credentials_file: str | None = None
    #: Connect and read timeout towards the object store, seconds.
    timeout: float = 30.0


@dataclass(frozen=True)
class HttpSettings:
    """How the node reads its clients (``[http]`` in tongban.toml)."""

    #: Networks of reverse proxies (nginx) whose X-Forwarded-For is believed, e.g.
    #: ["127.0.0.1/32", "172.16.0.0/12"]. Empty: the TCP peer is the client, always.
    trusted_proxies: tuple[str, ...] = ()
    #: Seconds a connection may wait for a request's headers to be complete: an idle
    #: keep-alive connection, a new connection that sends nothing, or one whose headers never
    #: finish (slowloris) is closed then. aiohttp's keep-alive timer does both.
    keepalive_timeout: float = 15.0
    #: Longest pause, seconds, while a request body is being received before the connection
    #: is closed (a body trickled byte by byte, or never finished).
    body_timeout: float = 30.0


@dataclass(frozen=True)
class DirectorySettings:
    """The partner directory this node follows (``[directory]`` in tongban.toml;
    docs/protocol.md §12.1). Regions it lists are partners, below partners.toml."""

    #: Where the authority serves the signed directory (``tongban directory serve``).
    url: str
    #: The authority id the directory's ``iss`` and key ids name (e.g. "430000").
    authority: str
    #: The authority's Ed25519 public keys (base64url of the raw 32 bytes, as
    #: ``tongban directory init-authority`` prints them); two while it rotates.
    authority_keys: tuple[str, ...]
    #: Seconds between fetches (a conditional GET: unchanged costs a 304).
    refresh: float = 300.0

    def public_keys(self) -> list[AuthorityKey]:
        return [AuthorityKey.from_text(self.authority, text) for text in self.authority_keys]


#: The allowed range of ``[directory] refresh``, seconds.
DIRECTORY_REFRESH_RANGE = (1.0, 86400.0)


#: The allowed range of each ``[http]`` timeout, seconds.
HTTP_TIMEOUT_RANGE = (0.5, 3600.0)


@dataclass(frozen=True)
class CaseSettings:
    """Time limits the province sets (``[cases]`` in tongban.toml), in working days."""

    #: 容缺: from the day of 收件 to hand in the deferred materials (provinces set 5 to 30).
    deferred_days: int = DEFAULT_DEFERRED_DAYS
    #: 差评: from the day of the rating to rectify it (provinces set 5 to 15).
    rectification_days: int = DEFAULT_RECTIFICATION_DAYS


@dataclass(frozen=True)
class HallSettings:
    """The service hall (政务服务中心) whose 跨域通办 window this node serves (``[hall]`` in
    tongban.toml), for the public 办事指南: where and when to apply in person. Every field is
    optional; the guide writes 「暂无」 for what is not set."""

    #: e.g. "衡阳市政务服务中心".
    name: str | None = None
    #: e.g. "一楼 跨域通办专窗（12-15 号窗口）".
    window: str | None = None
    address: str | None = None
    #: e.g. "周一至周五 9:00-12:00，13:30-17:00（法定节假日除外）".
    hours: str | None = None
    phone: str | None = None


#: The longest value of a ``[hall]`` setting, characters.
HALL_MAX_LENGTH = 200

#: The allowed range of each ``[cases]`` setting, inclusive.
CASE_SETTING_RANGES = {"deferred_days": (5, 30), "rectification_days": (5, 15)}


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
    cases: CaseSettings = field(default_factory=CaseSettings)
    blobs: BlobSettings = field(default_factory=BlobSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    #: Citizens' identity provider (统一身份认证) for online applications (docs/identity.md).
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    #: The partner directory followed, if any.
    directory: DirectorySettings | None = None
    hall: HallSettings = field(default_factory=HallSettings)
    videocalls: VideoCallSettings = field(default_factory=VideoCallSettings)
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
        try:
            identity = identity_settings(data.get("identity", {}))
        except IdentityConfigError as exc:
            raise ConfigError(str(exc)) from exc
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
            cases=_case_settings(data.get("cases", {})),
            blobs=_blob_settings(base, data.get("blobs", {})),
            http=_http_settings(data.get("http", {})),
            identity=identity,
            directory=_directory_settings(data.get("directory")),
            hall=_hall_settings(data.get("hall", {})),
            videocalls=_videocall_settings(data.get("videocalls", {})),
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


def _videocall_settings(data: Any) -> VideoCallSettings:
    try:
        return video_call_settings(data)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _inspection_settings(data: dict[str, Any]) -> InspectionSettings:
    known = InspectionSettings.__dataclass_fields__
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown [inspection] settings: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return InspectionSettings(**values)


def _blob_settings(base: Path, data: Any) -> BlobSettings:
    if not isinstance(data, dict):
        raise ConfigError("[blobs] must be a table")
    for secret in ("access_key_id", "secret_access_key", "session_token"):
        if secret in data:
            raise ConfigError(
                f"[blobs] {secret}: secrets do not go into tongban.toml; use credentials_file "
                "or TONGBAN_S3_ACCESS_KEY_ID / TONGBAN_S3_SECRET_ACCESS_KEY"
            )
    known = BlobSettings.__dataclass_fields__
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown [blobs] settings: {', '.join(sorted(unknown))}")
    values = dict(data)
    backend = str(values.get("backend", "folder"))
    if backend not in BLOB_BACKENDS:
        raise ConfigError(f"[blobs] backend = {backend!r}: use one of {', '.join(BLOB_BACKENDS)}")
    if backend == "s3" and not values.get("bucket"):
        raise ConfigError('[blobs] backend = "s3" needs bucket')
    if values.get("addressing_style", "path") not in ("path", "virtual", "auto"):
        raise ConfigError("[blobs] addressing_style: use path, virtual or auto")
    for text in ("endpoint_url", "bucket", "region", "prefix", "credentials_file"):
        if text in values and not isinstance(values[text], str):
            raise ConfigError(f"[blobs] {text}: a string")
    timeout = values.get("timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"[blobs] timeout = {timeout!r}: seconds, a number above 0")
    if values.get("credentials_file"):
        values["credentials_file"] = str(base / str(values["credentials_file"]))
    return BlobSettings(**values)


def _http_settings(data: Any) -> HttpSettings:
    if not isinstance(data, dict):
        raise ConfigError("[http] must be a table")
    unknown = set(data) - set(HttpSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown [http] settings: {', '.join(sorted(unknown))}")
    proxies = data.get("trusted_proxies", [])
    if not isinstance(proxies, list):
        raise ConfigError('[http] trusted_proxies: a list, e.g. ["127.0.0.1/32"]')
    for network in proxies:
        try:
            parsed = ipaddress.ip_network(str(network), strict=True)
        except ValueError as exc:
            raise ConfigError(
                f"[http] trusted_proxies: {network!r} is not a network (host bits set? "
                'write "172.30.240.5/32" for one address or "172.30.240.0/24" for its network)'
            ) from exc
        if parsed.prefixlen == 0:
            raise ConfigError(
                f"[http] trusted_proxies: {network!r} would believe every client's own "
                "X-Forwarded-For; list only the proxies' addresses"
            )
    timeouts: dict[str, float] = {}
    for name in ("keepalive_timeout", "body_timeout"):
        if name not in data:
            continue
        value = data[name]
        low, high = HTTP_TIMEOUT_RANGE
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            raise ConfigError(f"[http] {name}: seconds, a number from {low} to {high:.0f}")
        timeouts[name] = float(value)
    return HttpSettings(trusted_proxies=tuple(str(n) for n in proxies), **timeouts)


def _directory_settings(data: Any) -> DirectorySettings | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError("[directory] must be a table")
    unknown = set(data) - set(DirectorySettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown [directory] settings: {', '.join(sorted(unknown))}")
    for name in ("url", "authority", "authority_keys"):
        if name not in data:
            raise ConfigError(f"[directory] lacks {name}")
    url, authority, keys = data["url"], data["authority"], data["authority_keys"]
    if not isinstance(url, str) or urlsplit(url).scheme not in ("https", "http"):
        raise ConfigError("[directory] url: the directory's https:// URL")
    if not isinstance(authority, str) or not authority:
        raise ConfigError('[directory] authority: the authority id, e.g. "430000"')
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise ConfigError("[directory] authority_keys: a list of the authority's public keys")
    for text in keys:
        try:
            AuthorityKey.from_text(authority, text)
        except ValueError as exc:
            raise ConfigError(f"[directory] authority_keys: {text!r}: {exc}") from exc
    refresh = data.get("refresh", 300.0)
    low, high = DIRECTORY_REFRESH_RANGE
    number = isinstance(refresh, int | float) and not isinstance(refresh, bool)
    if not number or not low <= refresh <= high:
        raise ConfigError(f"[directory] refresh: seconds, a number from {low:.0f} to {high:.0f}")
    return DirectorySettings(
        url=url, authority=authority, authority_keys=tuple(keys), refresh=float(refresh)
    )


def _hall_settings(data: Any) -> HallSettings:
    if not isinstance(data, dict):
        raise ConfigError("[hall] must be a table")
    unknown = set(data) - set(HallSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown [hall] settings: {', '.join(sorted(unknown))}")
    for key, value in data.items():
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > HALL_MAX_LENGTH
            or any(ord(ch) < 0x20 for ch in value)
        ):
            raise ConfigError(f"[hall] {key}: one line of text, 1 to {HALL_MAX_LENGTH} characters")
    return HallSettings(**{k: v.strip() for k, v in data.items()})


def _case_settings(data: Any) -> CaseSettings:
    if not isinstance(data, dict):
        raise ConfigError("[cases] must be a table")
    unknown = set(data) - set(CaseSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown [cases] settings: {', '.join(sorted(unknown))}")
    for key, value in data.items():
        low, high = CASE_SETTING_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(
                f"[cases] {key} = {value!r}: a whole number of working days, {low} to {high}"
            )
    return CaseSettings(**data)


@functools.lru_cache(maxsize=4096)
def is_loopback_url(url: str) -> bool:
    # Cached: delivery checks its partner's URL before every send.
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
