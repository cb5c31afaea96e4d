"""HTTP calls to partner nodes: deliver an envelope, upload a blob, fetch a descriptor."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from node.config import FederationSettings, plain_http_refused
from node.federation.identity import NodeIdentity
from node.http_answers import read_answer
from node.storage.blobs import BlobStore
from protocol.catalog import MAX_CATALOG_BYTES
from protocol.descriptor import MAX_DESCRIPTOR_BYTES
from protocol.request_token import sign_request_token

JOSE = "application/jose"
#: Seconds to get a connection to a partner (from the pool or a new one).
SESSION_CONNECT_TIMEOUT = 10.0
#: Seconds to open a connection for a catalogue fetch (the session's own is 10 s). A partner
#: whose network drops our SYNs holds a refresher slot until this runs out: with thousands of
#: such partners the refresher's throughput is slots / this (node/catalog/refresher.py). Four
#: seconds still let the kernel resend a lost SYN twice (after 1 s and 3 s).
CATALOG_CONNECT_TIMEOUT = 4.0
#: Largest answer read from a partner where no larger document is expected: a receipt, or an
#: error naming up to some hundred missing blobs. A longer one is a broken or hostile partner.
MAX_ANSWER_BYTES = 64 * 1024


class TransportError(Exception):
    """The partner could not be reached, or answered 5xx: try again later."""


def client_ssl_context(settings: FederationSettings) -> ssl.SSLContext:
    """Certificate checking towards partners: the system CA store, plus ``ca_file`` (a private
    CA) when the config names one. Host names are always checked."""
    context = ssl.create_default_context()
    if settings.ca_file:
        context.load_verify_locations(cafile=settings.ca_file)
    return context


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    error: str | None = None
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    #: The answer's ETag header, when it has a sane one (printable ASCII, at most 100 chars).
    etag: str | None = None


@dataclass(frozen=True)
class CatalogAnswer:
    """A partner's catalogue: ``body`` None when it answered 304 Not Modified to our ETag."""

    body: bytes | None
    etag: str | None


def _etag(value: str | None) -> str | None:
    if value is None or not 0 < len(value) <= 100:
        return None
    return value if all(0x21 <= ord(ch) <= 0x7E for ch in value) else None


class PartnerClient:
    def __init__(self, identity: NodeIdentity, blobs: BlobStore, settings: FederationSettings):
        self._identity = identity
        self._blobs = blobs
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def set_identity(self, identity: NodeIdentity) -> None:
        self._identity = identity

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=self._settings.request_timeout, connect=SESSION_CONNECT_TIMEOUT
        )
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=self._settings.window + 4,
            ssl=client_ssl_context(self._settings),
        )
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def check_url(self, url: str) -> None:
        refused = plain_http_refused(url, self._settings)
        if refused is not None:
            raise TransportError(refused)

    async def post_envelope(self, base_url: str, token: str) -> Answer:
        return await self._call(
            "POST",
            f"{base_url}/federation/v1/envelopes",
            data=token.encode("ascii"),
            headers={"Content-Type": JOSE, "Accept": JOSE},
        )

    async def put_blob(self, base_url: str, partner: str, sha256: str) -> Answer:
        token = sign_request_token(
            iss=self._identity.region,
            aud=partner,
            sha256=sha256,
            now=time.time(),
            key=self._identity.private_key,
            kid=self._identity.kid,
        )
        size = await self._blobs.size(sha256)
        if size is None:
            return Answer(status=0, body=b"", error="blob_not_held", detail=sha256)
        return await self._call(
            "PUT",
            f"{base_url}/federation/v1/blobs/{sha256}",
            data=self._blobs.read_chunks(sha256),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
            },
        )

    async def get_descriptor(self, base_url: str) -> bytes:
        answer = await self._call(
            "GET", f"{base_url}/.well-known/tongban/node", limit=MAX_DESCRIPTOR_BYTES
        )
        if answer.status != 200:
            raise TransportError(f"descriptor: HTTP {answer.status} {answer.error or ''}")
        return answer.body

    async def get_catalog(self, base_url: str) -> bytes:
        """The partner's signed catalogue (``GET /federation/v1/catalog``), unverified."""
        answer = await self._call(
            "GET", f"{base_url}/federation/v1/catalog", limit=MAX_CATALOG_BYTES
        )
        if answer.status != 200:
            raise TransportError(f"catalogue: HTTP {answer.status} {answer.error or ''}")
        return answer.body

    async def get_catalog_if_changed(self, base_url: str, etag: str | None) -> CatalogAnswer:
        """The partner's signed catalogue, unverified, asked with ``If-None-Match: etag`` when
        we hold one. A 304 to a request without an ETag is refused (TransportError)."""
        headers = {"If-None-Match": etag} if etag else None
        answer = await self._call(
            "GET",
            f"{base_url}/federation/v1/catalog",
            headers=headers,
            limit=MAX_CATALOG_BYTES,
            connect_timeout=CATALOG_CONNECT_TIMEOUT,
        )
        if answer.status == 304 and etag:
            return CatalogAnswer(body=None, etag=answer.etag)
        if answer.status != 200:
            raise TransportError(f"catalogue: HTTP {answer.status} {answer.error or ''}")
        return CatalogAnswer(body=answer.body, etag=answer.etag)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        data: bytes | AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        limit: int = MAX_ANSWER_BYTES,
        connect_timeout: float | None = None,
    ) -> Answer:
        """One request; the answer's body is read up to ``limit`` bytes (a longer one is
        refused with TransportError ``answer_too_large``: never held in memory).
        ``connect_timeout``: seconds to open the connection, if not the session's."""
        assert self._session is not None, "PartnerClient.start() first"
        self.check_url(url)
        timeout = None
        if connect_timeout is not None:
            timeout = aiohttp.ClientTimeout(
                total=self._settings.request_timeout,
                connect=SESSION_CONNECT_TIMEOUT,
                sock_connect=connect_timeout,
            )
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as resp:
                read = await read_answer(resp, limit)
                status = resp.status
                etag = _etag(resp.headers.get("ETag"))
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TransportError(f"tls_certificate_error: {exc.certificate_error}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if read is None:
            raise TransportError(f"answer_too_large: HTTP {status}, over {limit} bytes")
        body = read
        if status >= 500:
            raise TransportError(f"HTTP {status}: {body[:200]!r}")
        if status >= 400:
            try:
                payload = json.loads(body)
                error = str(payload.pop("error"))
                detail = str(payload.pop("detail", ""))
                return Answer(status, body, error, detail, payload)
            except (ValueError, KeyError, TypeError, AttributeError):
                return Answer(status, body, "unexplained", body[:200].decode("utf-8", "replace"))
        return Answer(status, body, etag=etag)
