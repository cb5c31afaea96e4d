"""Following a partner directory (docs/protocol.md §12.1): fetch it every ``[directory]
refresh`` seconds with a conditional GET, verify it, keep it, and put it in force in the trust
store in one swap.

- 304, or the same bytes again: nothing changes (the check is recorded).
- A directory that does not verify (bad signature, unknown authority key, expired, not yet
  valid, an older or conflicting serial, a malformed entry) is never applied: the one in force
  stays, and the refusal's code is recorded for `tongban doctor`, `tongban directory status`
  and /metrics.
- The directory in force is kept in ``DIR/directory/`` and put in force again at start, if it
  still verifies; once it expires (and no newer one came) its regions stop being partners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import aiohttp

from node.config import NodeConfig, plain_http_refused
from node.federation.client import client_ssl_context
from node.federation.directory_state import (
    FetchStatus,
    load_status,
    load_token,
    save_status,
    save_token,
    verify_kept,
)
from node.federation.trust import TrustStore
from node.http_answers import read_answer
from node.metrics import Metrics
from protocol.claims import CLOCK_SKEW
from protocol.directory import MAX_DIRECTORY_BYTES, Directory, verify_directory
from protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

JOSE = "application/jose"
#: Code recorded when the authority cannot be reached or answers something unusable.
FETCH_FAILED = "fetch_failed"
#: The outcomes of one fetch, as /metrics counts them.
APPLIED, UNCHANGED, NOT_MODIFIED = "applied", "unchanged", "not_modified"


class DirectoryFollower:
    def __init__(self, config: NodeConfig, trust: TrustStore, metrics: Metrics) -> None:
        if config.directory is None:
            raise ValueError("no [directory] in tongban.toml")
        self._config = config
        self._settings = config.directory
        self._keys = self._settings.public_keys()
        self._trust = trust
        self._metrics = metrics
        self._status = FetchStatus()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        metrics.directory_age.set_function(self._age)

    @property
    def in_force(self) -> Directory | None:
        return self._trust.directory

    @property
    def status(self) -> FetchStatus:
        return self._status

    def _age(self) -> float:
        directory = self.in_force
        return max(0.0, time.time() - directory.iat) if directory is not None else -1.0

    async def start(self, *, follow: bool = True) -> None:
        """Put the kept directory in force (if it still verifies), then follow the URL (every
        ``refresh`` seconds; without ``follow``, only when ``refresh()`` is called)."""
        self._status = load_status(self._config)
        directory, refused = verify_kept(self._settings, load_token(self._config), time.time())
        if refused is not None:
            self._record_error(refused.code, refused.detail)
            log.warning("kept partner directory not in force", extra={"why": str(refused.code)})
        if directory is not None:
            await self._trust.apply_directory(directory, own_region=self._config.region)
        self._gauges()
        timeout = aiohttp.ClientTimeout(total=self._config.federation.request_timeout, connect=10)
        connector = aiohttp.TCPConnector(ssl=client_ssl_context(self._config.federation))
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        if follow:
            self._task = asyncio.create_task(self._run(), name="directory-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("following the partner directory failed")
            await asyncio.sleep(self._settings.refresh)

    async def refresh(self) -> str:
        """One fetch; returns ``applied``, ``unchanged``, ``not_modified`` or the code of the
        refusal or failure."""
        async with self._lock:
            outcome = await self._refresh()
        self._metrics.directory_fetches.labels(outcome).inc()
        self._gauges()
        return outcome

    async def _refresh(self) -> str:
        await self._drop_if_expired()
        url = self._settings.url
        refused = plain_http_refused(url, self._config.federation)
        if refused is not None:
            return self._record_error(FETCH_FAILED, refused)
        headers = {"Accept": JOSE}
        if self._status.etag and self.in_force is not None:
            headers["If-None-Match"] = self._status.etag
        assert self._session is not None
        try:
            async with self._session.get(url, headers=headers) as resp:
                if resp.status == 304:
                    self._status.checked_at = time.time()
                    self._clear_error()
                    return NOT_MODIFIED
                if resp.status != 200:
                    return self._record_error(FETCH_FAILED, f"HTTP {resp.status}")
                body = await read_answer(resp, MAX_DIRECTORY_BYTES)
                etag = resp.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._record_error(FETCH_FAILED, f"{type(exc).__name__}: {exc}")
        if body is None:
            return self._record_error(FETCH_FAILED, f"over {MAX_DIRECTORY_BYTES} bytes")
        return await self.offer(body, etag=etag)

    async def offer(self, token: bytes, *, etag: str | None = None) -> str:
        """Verify ``token`` against the directory in force and apply it if it is newer."""
        current = self.in_force
        in_force = (current.serial, current.digest) if current is not None else None
        last = self._status
        if in_force is None and last.applied_serial is not None and last.applied_digest:
            # None in force (expired, or refused at start): still never an older one.
            in_force = (last.applied_serial, last.applied_digest)
        try:
            # A national directory takes a noticeable moment to verify: not on the event loop.
            directory = await asyncio.to_thread(
                verify_directory, token, self._keys, now=time.time(), in_force=in_force
            )
        except ProtocolError as exc:
            log.warning(
                "partner directory refused", extra={"why": str(exc.code), "detail": exc.detail}
            )
            return self._record_error(exc.code, exc.detail)
        self._status.checked_at = time.time()
        self._status.etag = etag
        self._clear_error()
        if current is not None and directory.digest == current.digest:
            return UNCHANGED
        # Kept first: what is in force is always what a restart puts in force again.
        await asyncio.to_thread(save_token, self._config, token)
        await self._trust.apply_directory(directory, own_region=self._config.region)
        self._status.applied_at = time.time()
        self._status.applied_serial = directory.serial
        self._status.applied_digest = directory.digest
        self._save_status()
        own = directory.entries.get(self._config.region)
        log.info(
            "partner directory applied",
            extra={
                "serial": directory.serial,
                "regions": len(directory.entries),
                "own_entry": "absent" if own is None else "listed",
            },
        )
        return APPLIED

    async def _drop_if_expired(self) -> None:
        directory = self.in_force
        if directory is not None and directory.exp < time.time() - CLOCK_SKEW:
            await self._trust.apply_directory(None, own_region=self._config.region)
            self._record_error(ErrorCode.DIRECTORY_STALE, f"serial {directory.serial} expired")
            log.warning("partner directory expired", extra={"serial": directory.serial})

    def _record_error(self, code: str, detail: str) -> str:
        self._status.last_error = str(code)
        self._status.last_error_detail = detail[:300]
        self._status.last_error_at = time.time()
        self._save_status()
        return str(code)

    def _clear_error(self) -> None:
        self._status.last_error = None
        self._status.last_error_detail = None
        self._status.last_error_at = None
        self._save_status()

    def _save_status(self) -> None:
        try:
            save_status(self._config, self._status)
        except OSError:
            log.exception("writing the directory status failed")

    def _gauges(self) -> None:
        m = self._metrics
        directory = self.in_force
        m.directory_serial.set(directory.serial if directory is not None else 0)
        m.directory_regions.set(len(directory.entries) if directory is not None else 0)
        m.directory_expires.set(directory.exp if directory is not None else 0)
        for code in list(m.known_directory_errors):
            m.directory_error.labels(code).set(0)
        if self._status.last_error:
            m.known_directory_errors.add(self._status.last_error)
            m.directory_error.labels(self._status.last_error).set(1)


@contextlib.asynccontextmanager
async def following(
    config: NodeConfig, trust: TrustStore, metrics: Metrics
) -> AsyncIterator[DirectoryFollower | None]:
    """A follower for the node's ``[directory]`` for the duration of the block (none without
    one)."""
    if config.directory is None:
        yield None
        return
    follower = DirectoryFollower(config, trust, metrics)
    await follower.start()
    try:
        yield follower
    finally:
        await follower.stop()
