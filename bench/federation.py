"""End-to-end federation throughput: two real node processes, one outbox of N envelopes.

    python -m bench.federation [--n 5000] [--database sqlite|postgres] [--payload-bytes 2048]
                               [--repeats 1] [--out bench/results/federation-<db>.json]

What is measured (see bench/README.md for the details):

1. Two fresh nodes (sender 430523, receiver 430400) are made with ``init_node`` + ``link_all``
   in a temp dir (SQLite files there, or two fresh PostgreSQL databases).
2. The sender's outbox is filled with N signed envelopes (``case.progress`` over N/5 cases)
   by this process, and held: their ``next_attempt_at`` is set far in the future.
3. Once the machine is quiet, a bare aiohttp echo process is sent the same N envelopes with
   the node's delivery window as concurrency: the ceiling of "HTTP POST of these bytes" here.
4. The receiver, then the sender, are started as ``python -m node.cli run`` processes.
5. Once both answer /healthz, the hold is released: ``next_attempt_at = t0``, with t0 two
   fallback scans ahead, in one transaction; the sender's scheduler finds the rows at a scan
   before t0 and wakes the sender at t0, as at a retry's due time. The clock runs
   from t0 to the moment the last outbox row has ``delivered_at`` (its receipt verified and
   stored): outbox -> HTTP -> verify -> durable store -> receipt -> stored back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from bench import procstat
from bench.echo import run_client
from node.config import FederationSettings, NodeConfig
from node.federation.identity import NodeIdentity
from node.federation.models import OUTBOX_TOKEN, inbound_envelopes, inbound_messages, outbox
from node.federation.outbox import Outbox
from node.provisioning import init_node, link_all
from node.storage.database import Database
from node.storage.sealing import load_sealer
from protocol import messages
from protocol.errors import ProtocolError
from tests.support.databases import pg_connect

REPO = Path(__file__).resolve().parent.parent
SENDER = ("430523", "邵阳县")
RECEIVER = ("430400", "衡阳市")
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
#: next_attempt_at of held rows: far in the future, so the sender's worker leaves them.
HOLD = 4_000_000_000.0
#: Envelopes signed and stored per transaction while filling the outbox.
FILL_BATCH = 500
#: Passes of the echo baseline (median reported): one pass of 5,000 takes well under a second.
ECHO_PASSES = 3
#: Busier than this (cores, other processes) and the machine is not quiet enough to measure.
QUIET_CORES = 0.25
PAD_TEXT = "因申请人补正材料需要，办理时限顺延；经办人已电话告知并记录在案。"
PAD_FIELDS = ("note", "reason", "detail", "remark", "comment", "description", "text")


# -- message bodies ----------------------------------------------------------------------------


def _encoded_size(body: dict[str, Any]) -> int:
    """Bytes of ``body`` as signed (PyJWT's json.dumps: compact, ASCII-escaped)."""
    return len(json.dumps(body, separators=(",", ":")).encode())


def _valid(typ: str, body: dict[str, Any], blobs: list[dict[str, Any]]) -> bool:
    try:
        messages.validate_body(typ, body, blobs)
    except ProtocolError:
        return False
    return True


def make_body(typ: str, payload_bytes: int) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """A valid body of ``typ`` of about ``payload_bytes`` (encoded), padded in a free-text
    field within the schema's limits. Returns (body, blobs, description of where it came
    from)."""
    make = getattr(messages, "example_body", None)
    origin = "protocol.messages.example_body"
    if make is None:
        body: dict[str, Any] = {}
        blobs: list[dict[str, Any]] = []
        origin = "generic {note} body (protocol.messages.example_body does not exist yet)"
    else:
        found = make(typ)
        if isinstance(found, dict):
            body, blobs = dict(found), []
        else:
            body = dict(found[0])
            blobs = list(found[1]) if len(found) > 1 and found[1] else []
    if blobs:
        raise SystemExit(f"the example body of {typ} names blobs; pick a type without blobs")
    if not _valid(typ, body, blobs):
        raise SystemExit(f"the example body of {typ} does not validate: {body!r}")
    candidates = [k for k in PAD_FIELDS if isinstance(body.get(k), str)]
    candidates += [k for k in PAD_FIELDS if k not in body]
    best: tuple[int, dict[str, Any], str] | None = None
    for key in candidates:
        padded = _pad(typ, body, blobs, key, payload_bytes)
        if padded is None:
            continue
        size = _encoded_size(padded)
        if best is None or abs(size - payload_bytes) < abs(best[0] - payload_bytes):
            best = (size, padded, key)
        if abs(size - payload_bytes) < 16:
            break
    if best is None:
        return body, blobs, origin + ", not padded (no free-text field accepts padding)"
    return best[1], blobs, f"{origin}, padded in body.{best[2]}"


def _pad(
    typ: str, body: dict[str, Any], blobs: list[dict[str, Any]], key: str, target: int
) -> dict[str, Any] | None:
    def with_length(chars: int) -> dict[str, Any]:
        base = body.get(key, "") if isinstance(body.get(key), str) else ""
        filler = (PAD_TEXT * (chars // len(PAD_TEXT) + 1))[: max(0, chars - len(base))]
        return {**body, key: base + filler}

    # Each pad character encodes to 6 bytes (\\uXXXX); find the length that reaches target.
    lo, hi = 0, max(1, target)
    if not _valid(typ, with_length(0), blobs):
        return None
    while lo < hi:  # largest length whose encoded size is <= target and which validates
        mid = (lo + hi + 1) // 2
        candidate = with_length(mid)
        if _encoded_size(candidate) <= target and _valid(typ, candidate, blobs):
            hi_ok = True
        else:
            hi_ok = False
        if hi_ok:
            lo = mid
        else:
            hi = mid - 1
    return with_length(lo)


# -- databases ---------------------------------------------------------------------------------


class Databases:
    """SQLite files in the temp dir, or fresh PostgreSQL databases (dropped afterwards)."""

    def __init__(self, kind: str, tmp: Path, pg_url: str) -> None:
        self.kind = kind
        self.tmp = tmp
        self.pg_url = pg_url
        self.created: list[str] = []

    async def new_url(self, label: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp / f'{label}.db'}"
        name = f"tb_bench_{label}_{uuid.uuid4().hex[:8]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.pg_url).set(database=name).render_as_string(hide_password=False)

    async def server_version(self) -> str | None:
        if self.kind != "postgres":
            return None
        return str(await self._admin("SHOW server_version", fetch=True))

    async def drop_all(self) -> None:
        for name in self.created:
            try:
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # leave it, but say so
                print(f"  could not drop database {name}: {exc}", file=sys.stderr)
        self.created.clear()

    async def _admin(self, sql: str, *, fetch: bool = False) -> Any:
        conn = await pg_connect(self.pg_url)
        try:
            if fetch:
                return await conn.fetchval(sql)
            await conn.execute(sql)
            return None
        finally:
            await conn.close()


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A child process (a node, or the echo server) with its log file."""

    name: str
    argv: list[str]
    url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    last_cpu: procstat.CpuSample | None = None
    last_peak_rss: float | None = None

    async def start(self, timeout: float = 60.0) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}; see {self.log}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} did not come up; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> procstat.CpuSample:
        sample = procstat.cpu(self.pid)
        self.last_cpu = sample
        return sample

    def peak_rss(self) -> float | None:
        value = procstat.peak_rss_mib(self.pid)
        if value is not None:
            self.last_peak_rss = value
        return self.last_peak_rss

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            self.cpu()
            self.peak_rss()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_problems(self, limit: int = 5) -> dict[str, Any]:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return {"lines": 0, "problems": 0, "first": []}
        bad = [
            line
            for line in lines
            if re.search(r'"level": ?"(error|warning|critical)"|Traceback|\bERROR\b', line, re.I)
        ]
        return {
            "lines": len(lines),
            "problems": len(bad),
            "first": [_log_gist(b) for b in bad[:limit]],
        }


def _log_gist(line: str) -> str:
    """A JSON log line as "level logger: msg (fields) -- last line of the exception"."""
    try:
        record = json.loads(line)
    except ValueError:
        return line[:400]
    if not isinstance(record, dict):
        return line[:400]
    exc = [
        line
        for line in str(record.pop("exc", "") or "").strip().splitlines()
        if re.match(r"^[\w.]+(Error|Exception|Violation)\b", line)
    ] or str(record.get("exc", "")).strip().splitlines()
    head = f"{record.pop('level', '?')} {record.pop('logger', '?')}: {record.pop('msg', '')}"
    record.pop("ts", None)
    extra = ", ".join(f"{k}={v}" for k, v in record.items())
    return (head + (f" ({extra})" if extra else "") + (f" -- {exc[-1]}" if exc else ""))[:600]


def node_proc(config: NodeConfig, log_dir: Path, *, port: int | None = None, tag: str = "") -> Proc:
    argv = [sys.executable, "-m", "node.cli", "run", "--dir", str(config.dir)]
    url = config.url
    if port is not None and port != config.port:
        argv += ["--port", str(port)]
        url = f"http://{config.host}:{port}"
    name = f"node-{config.region}{tag}"
    return Proc(name, argv, url, log_dir / f"{name}.log")


#: Seconds between the nodes answering /healthz and the release.
SETTLE_SECONDS = 3.0


def release_ahead(poll_interval: float) -> float:
    """How far ahead of its due time the release is written: two fallback scans and a margin,
    so that a scan sees the rows before they fall due whatever its phase."""
    return 2 * poll_interval + 0.1


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Params:
    n: int
    database: str
    payload_bytes: int
    typ: str
    cases: int
    replicas: int
    pg_url: str
    overrides: dict[str, Any] = field(default_factory=dict)
    timeout: float = 600.0
    aftermath_timeout: float = 180.0
    keep: bool = False
    profile: Path | None = None
    quiet_wait: float = 300.0
    retry_disturbed: int = 0

    @property
    def settings(self) -> FederationSettings:
        return FederationSettings(**self.overrides)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]

    return {
        "p50_ms": pick(0.50) * 1000,
        "p90_ms": pick(0.90) * 1000,
        "p99_ms": pick(0.99) * 1000,
        "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def _window_cycle(rows: list[Any], arrivals: dict[str, float], t0: float) -> dict[str, Any]:
    """Where the time of one record batch goes, from the timestamps alone.

    The sender's queue keeps a sliding window on the wire and records finished sends in
    batches (``Delivery.settle``), stamping every row of a batch with one ``delivered_at``, so
    distinct values are batches (with one sender process and one queue). Batches overlap on
    the wire (there is no round barrier any more), so the phases below are indicative: for
    batch k, ``to_first_store`` is the time from batch k-1's ``delivered_at`` to the receiver's
    first durable store of batch k's rows (negative when they were already stored);
    ``receiver_spread`` from the receiver's first to last store of the batch; ``back`` from
    the last store to batch k's ``delivered_at`` (receipts sent, received and verified).
    """
    rounds: dict[float, list[float]] = {}
    for r in rows:
        if r.delivered_at is not None and r.jti in arrivals:
            rounds.setdefault(r.delivered_at, []).append(arrivals[r.jti])
    stamps = sorted(rounds)
    if len(stamps) < 3:
        return {"rounds": len(stamps)}
    period, to_first, spread, back, stores = [], [], [], [], []
    previous = t0
    for index, stamp in enumerate(stamps):
        got = rounds[stamp]
        if index > 0:
            period.append(stamp - previous)
            to_first.append(min(got) - previous)
        spread.append(max(got) - min(got))
        back.append(stamp - max(got))
        stores.append(len(set(got)))
        previous = stamp
    ms = 1000.0
    return {
        "rounds": len(stamps),
        "envelopes_per_round_mean": statistics.fmean(len(v) for v in rounds.values()),
        "period_ms_median": statistics.median(period) * ms,
        "to_first_store_ms_median": statistics.median(to_first) * ms,
        "receiver_spread_ms_median": statistics.median(spread) * ms,
        "back_ms_median": statistics.median(back) * ms,
        "receiver_commits_per_round_median": statistics.median(stores),
        "note": "record batches of a sliding window (they overlap on the wire); one sender "
        "process only",
    }


async def _scalar(db: Database, statement: Any) -> Any:
    async with db.read() as conn:
        return (await conn.execute(statement)).scalar_one()


async def _metrics(url: str) -> dict[str, float]:
    """The tongban_envelopes_* counters of a node's /metrics (summed per result)."""
    found: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
            body = await resp.text()
    except (aiohttp.ClientError, OSError):
        return found
    for line in body.splitlines():
        match = re.match(
            r"^(tongban_envelopes_(?:in|out))_total\{(.*)\} ([0-9.e+]+)$", line.strip()
        )
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        key = f"{match.group(1)}.{labels.get('type', '?')}.{labels.get('result', '?')}"
        found[key] = found.get(key, 0.0) + float(match.group(3))
    return found


async def fill_outbox(
    config: NodeConfig, partner: str, params: Params, run_tag: str
) -> dict[str, Any]:
    """Sign and store N envelopes in the sender's outbox, held (not yet due)."""
    body, blobs, origin = make_body(params.typ, params.payload_bytes)
    db = Database(config.database_url)
    started = time.perf_counter()
    try:
        identity = await NodeIdentity.load(config, db)
        box = Outbox(identity, wake=lambda _partner: None, sealer=load_sealer(config.dir))
        xts = [f"bench-{run_tag}-{i:06d}" for i in range(params.cases)]
        for start in range(0, params.n, FILL_BATCH):
            async with db.write() as conn:
                for i in range(start, min(params.n, start + FILL_BATCH)):
                    await box.enqueue(
                        conn,
                        partner=partner,
                        typ=params.typ,
                        xt=xts[i % len(xts)],
                        body=body,
                        blobs=blobs or None,
                    )
        async with db.write() as conn:
            await conn.execute(update(outbox).values(next_attempt_at=HOLD))
        async with db.read() as conn:
            sizes = (await conn.execute(select(func.length(outbox.c.token)))).scalars().all()
    finally:
        await db.dispose()
    return {
        "body_origin": origin,
        "body_bytes": _encoded_size(body),
        "token_bytes_mean": statistics.fmean(sizes),
        "fill_s": time.perf_counter() - started,
    }


async def wait_for_quiet(max_wait: float, threshold: float = QUIET_CORES) -> dict[str, Any]:
    """Wait (up to ``max_wait`` s) until the machine is nearly idle: other people's test runs
    on a 2-core machine halve the figures. Returns what was seen."""
    started = time.monotonic()
    quiet = 0
    while True:
        before = procstat.machine_cpu()
        await asyncio.sleep(2.0)
        busy = (procstat.machine_cpu() - before).busy / 2.0
        waited = time.monotonic() - started
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= 3:  # 6 s in a row: not just a gap between somebody's tests
            return {"busy_cores_before": round(busy, 3), "waited_s": round(waited, 1)}
        if busy < threshold:
            continue
        if waited > max_wait:
            print(f"  machine still busy ({busy:.2f} cores) after {waited:.0f} s; running anyway")
            return {"busy_cores_before": round(busy, 3), "waited_s": round(waited, 1)}
        print(f"  machine busy ({busy:.2f} cores used by others); waiting ...", flush=True)
        await asyncio.sleep(5.0)


async def _tokens(config: NodeConfig) -> list[bytes]:
    db = Database(config.database_url)
    try:
        async with db.read() as conn:
            rows = (await conn.execute(select(outbox.c.token).order_by(outbox.c.id))).scalars()
            sealer = load_sealer(config.dir)
            return [sealer.open(t, OUTBOX_TOKEN).encode("ascii") for t in rows.all()]
    finally:
        await db.dispose()


async def make_pair(
    tmp: Path, dbs: Databases, extra_toml: str = ""
) -> tuple[NodeConfig, NodeConfig]:
    """The sender and the receiver, made in ``tmp`` and linked as partners."""
    configs = [
        await init_node(
            tmp / region,
            region=region,
            name=name,
            port=free_port(),
            database_url=await dbs.new_url(region),
            extra_toml=extra_toml,
        )
        for region, name in (SENDER, RECEIVER)
    ]
    await link_all(configs)
    return configs[0], configs[1]


async def run_once(params: Params, index: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tongban-bench-"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    dbs = Databases(params.database, tmp, params.pg_url)
    procs: list[Proc] = []
    result: dict[str, Any] = {"repeat": index, "tmp": str(tmp)}
    try:
        extra = ""
        if params.overrides:
            extra = "[federation]\n" + "".join(
                f"{k} = {_toml_value(v)}\n" for k, v in params.overrides.items()
            )
        sender_cfg, receiver_cfg = await make_pair(tmp, dbs, extra)
        run_tag = uuid.uuid4().hex[:8]
        print(f"  filling the outbox with {params.n} envelopes ...", flush=True)
        result["fill"] = await fill_outbox(sender_cfg, receiver_cfg.region, params, run_tag)
        if params.quiet_wait > 0:
            result["quiet"] = await wait_for_quiet(params.quiet_wait)
        # The baseline first, while the machine is known to be quiet: the same bytes, the same
        # concurrency, to a bare aiohttp echo process.
        result["echo"] = await echo_baseline(await _tokens(sender_cfg), params, log_dir)

        receiver = node_proc(receiver_cfg, log_dir)
        senders = [node_proc(sender_cfg, log_dir, tag="" if params.replicas == 1 else "-r0")]
        for r in range(1, params.replicas):
            senders.append(node_proc(sender_cfg, log_dir, port=free_port(), tag=f"-r{r}"))
        procs = [receiver, *senders]
        for proc in procs:
            await proc.start()

        sender_db = Database(sender_cfg.database_url)
        receiver_db = Database(receiver_cfg.database_url)
        try:
            # Let start-up work settle: the migrations check, the first scans and the catalogue
            # refresher's first round (about a second after start; measured with 1 s here,
            # it met the release and the first arrival came 0.34-0.38 s after it instead of
            # 0.17).
            await asyncio.sleep(SETTLE_SECONDS)
            pending = (
                outbox.c.partner == receiver_cfg.region,
                outbox.c.delivered_at.is_(None),
                outbox.c.dead_at.is_(None),
            )
            calibration_ms = procstat.calibrate()
            spies = start_profilers(procs, params.profile, index)
            # Release the held rows: they fall due at t0, a little ahead. Rows written by
            # another process reach the sender through its fallback scan, which schedules a
            # row due before the next scan at its due time; made due "now", they would wait
            # for that scan (0.20-0.42 s measured), which a node's own inserts never do (the
            # commit wakes the sender). Due at t0, a scan sees them first and the sender
            # wakes at t0, as it does at a retry's due time.
            ahead = release_ahead(sender_cfg.federation.poll_interval)
            async with sender_db.write() as conn:
                t0 = time.time() + ahead
                await conn.execute(update(outbox).where(*pending).values(next_attempt_at=t0))
            await asyncio.sleep(max(0.0, t0 - time.time() - 0.05))
            cpu0 = {p.name: p.cpu() for p in procs}
            bench_cpu0 = time.process_time()
            machine0 = procstat.machine_cpu()
            server0 = procstat.cpu_by_name("postgres") if params.database == "postgres" else {}
            loadavg = os.getloadavg()
            await asyncio.sleep(max(0.0, t0 - time.time()))
            print("  released; delivering ...", flush=True)
            deadline = time.monotonic() + params.timeout
            left = params.n
            last_report = time.monotonic()
            while True:
                await asyncio.sleep(0.2)
                left = await _scalar(sender_db, select(func.count()).where(*pending))
                if left == 0:
                    break
                for proc in procs:
                    if proc.proc is not None and proc.proc.poll() is not None:
                        raise RuntimeError(f"{proc.name} died; see {proc.log}")
                if time.monotonic() > deadline:
                    break
                if time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    print(f"    {params.n - left}/{params.n} delivered", flush=True)
            t_seen = time.time()
            cpu1 = {p.name: p.cpu() for p in procs}
            bench_cpu = time.process_time() - bench_cpu0
            machine_used = procstat.machine_cpu() - machine0
            server_cpu = (
                procstat.cpu_used_since(server0, procstat.cpu_by_name("postgres"))
                if params.database == "postgres"
                else None
            )
            rss_at_end = {p.name: p.peak_rss() for p in procs}
            stop_profilers(spies)

            async with sender_db.read() as conn:
                rows = (
                    await conn.execute(
                        select(
                            outbox.c.jti,
                            outbox.c.delivered_at,
                            outbox.c.dead_at,
                            outbox.c.attempts,
                            outbox.c.last_error,
                        ).where(outbox.c.partner == receiver_cfg.region)
                    )
                ).all()
            async with receiver_db.read() as conn:
                arrivals = {
                    r.jti: r.received_at
                    for r in (
                        await conn.execute(
                            select(inbound_envelopes.c.jti, inbound_envelopes.c.received_at).where(
                                inbound_envelopes.c.iss == sender_cfg.region
                            )
                        )
                    ).all()
                }
            delivered = sorted(r.delivered_at for r in rows if r.delivered_at is not None)
            dead = [r for r in rows if r.dead_at is not None]
            complete = len(delivered) == params.n
            t_end = delivered[-1] if delivered else t_seen
            elapsed = t_end - t0
            first_arrival = min(arrivals.values()) if arrivals else None
            lat = [d - t0 for d in delivered]
            back = [
                r.delivered_at - arrivals[r.jti]
                for r in rows
                if r.delivered_at is not None and r.jti in arrivals
            ]

            def at_fraction(q: float) -> float:
                return delivered[min(len(delivered) - 1, int(q * len(delivered)))]

            steady = None
            if len(delivered) >= 20:
                t10, t90 = at_fraction(0.10), at_fraction(0.90)
                if t90 > t10:
                    steady = (int(0.9 * len(delivered)) - int(0.1 * len(delivered))) / (t90 - t10)
            cycle = _window_cycle(rows, arrivals, t0)
            window_s = t_seen - t0
            cpu = {}
            for proc in procs:
                used = cpu1[proc.name] - cpu0[proc.name]
                cpu[proc.name] = {
                    "user_s": round(used.user, 3),
                    "system_s": round(used.system, 3),
                    "total_s": round(used.total, 3),
                    "cores_busy": round(used.total / window_s, 3) if window_s > 0 else None,
                    "ms_per_envelope": round(1000 * used.total / params.n, 4),
                }
            result["delivery"] = {
                "complete": complete,
                "delivered": len(delivered),
                "dead": len(dead),
                "dead_errors": sorted({str(r.last_error) for r in dead})[:5],
                "retried_rows": sum(1 for r in rows if r.attempts),
                "elapsed_s": elapsed,
                "envelopes_per_s": len(delivered) / elapsed if elapsed > 0 else None,
                "steady_envelopes_per_s_10_90": steady,
                "first_arrival_after_release_s": (
                    first_arrival - t0 if first_arrival is not None else None
                ),
                "envelopes_per_s_from_first_arrival": (
                    len(delivered) / (t_end - first_arrival)
                    if first_arrival is not None and t_end > first_arrival
                    else None
                ),
                "latency_from_release": _percentiles(lat),
                "receipt_back_lag": _percentiles(back),
                "latency_note": (
                    "delivered_at minus t0 (the release of the pre-filled outbox): with all N "
                    "queued at t0 this is mostly queueing. created_at-based latency is not "
                    "meaningful here (rows were created before the sender started); "
                    "receipt_back_lag is delivered_at at the sender minus received_at at the "
                    "receiver for the same jti."
                ),
                "window_cycle": cycle,
                "measured_window_s": window_s,
                "cpu": cpu,
                "bench_process_cpu_s": round(bench_cpu, 3),
                "machine": {
                    "loadavg_1m_before": loadavg[0],
                    "calibration_ms": round(calibration_ms, 1),
                    "busy_cores": round(machine_used.busy / window_s, 3),
                    "steal_cores": round(machine_used.steal / window_s, 3),
                    # CPU of everything else on the machine during the window (other users'
                    # processes, the kernel's own threads): a noisy neighbour shows here.
                    "other_cpu_s": round(
                        machine_used.busy
                        - sum((cpu1[p.name] - cpu0[p.name]).total for p in procs)
                        - bench_cpu
                        - (server_cpu or 0.0),
                        3,
                    ),
                    # All PostgreSQL server processes (both nodes' backends, WAL writer, ...).
                    "postgres_server_cpu_s": (
                        round(server_cpu, 3) if server_cpu is not None else None
                    ),
                },
                "peak_rss_mib": rss_at_end,
            }

            # Aftermath: the receiver applies what it stored (and answers refusals with
            # case.error envelopes, which the sender then stores and applies).
            after: dict[str, Any] = {}
            unapplied = inbound_messages.c.applied_at.is_(None)
            reply_pending = (outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_(None))
            after["unapplied_at_end_of_delivery"] = await _scalar(
                receiver_db, select(func.count()).where(unapplied)
            )
            after["replies_queued_at_end_of_delivery"] = await _scalar(
                receiver_db, select(func.count()).select_from(outbox)
            )
            deadline = time.monotonic() + params.aftermath_timeout
            spies = start_profilers(procs, params.profile, index, phase="aftermath")
            settled = False
            while time.monotonic() < deadline:
                waiting = await _scalar(receiver_db, select(func.count()).where(unapplied))
                replies_left = await _scalar(
                    receiver_db, select(func.count()).where(*reply_pending)
                )
                if waiting == 0 and replies_left == 0:
                    settled = True
                    break
                await asyncio.sleep(0.25)
            stop_profilers(spies)
            async with receiver_db.read() as conn:
                outcomes = {
                    str(o): c
                    for o, c in (
                        await conn.execute(
                            select(inbound_messages.c.outcome, func.count()).group_by(
                                inbound_messages.c.outcome
                            )
                        )
                    ).all()
                }
                first_applied, last_applied, applied = (
                    await conn.execute(
                        select(
                            func.min(inbound_messages.c.applied_at),
                            func.max(inbound_messages.c.applied_at),
                            func.count(inbound_messages.c.applied_at),
                        ).where(inbound_messages.c.iss == sender_cfg.region)
                    )
                ).one()
                drained = (
                    await conn.execute(
                        select(func.count()).where(
                            inbound_messages.c.iss == sender_cfg.region,
                            inbound_messages.c.applied_at > t_end,
                        )
                    )
                ).scalar_one()
                replies = (
                    await conn.execute(select(func.count()).select_from(outbox))
                ).scalar_one()
            after["receiver_outcomes"] = outcomes
            after["receiver_replies"] = replies
            after["all_applied_after_release_s"] = (
                last_applied - t0 if last_applied is not None else None
            )
            # The receiver's applier rate while it had work: a node that stores faster than it
            # applies builds a backlog that only quiet hours drain.
            after["applied_per_s"] = (
                applied / (last_applied - first_applied)
                if applied and last_applied > first_applied
                else None
            )
            # After the last receipt: the applier alone at full speed (during delivery it gives
            # the writer to inbound stores), while the node still delivers its replies.
            after["drained_after_delivery"] = drained
            after["drain_per_s"] = (
                drained / (last_applied - t_end)
                if drained and last_applied is not None and last_applied > t_end
                else None
            )
            after["settled"] = settled
            cpu2 = {p.name: p.cpu() for p in procs}
            after["cpu_total_s_since_release"] = {
                p.name: round((cpu2[p.name] - cpu0[p.name]).total, 3) for p in procs
            }
            after["metrics"] = {p.name: await _metrics(p.url) for p in procs}
            result["aftermath"] = after
            result["peak_rss_mib"] = {p.name: p.peak_rss() for p in procs}
        finally:
            await sender_db.dispose()
            await receiver_db.dispose()
            for proc in procs:
                proc.stop()
        result["logs"] = {p.name: p.log_problems() for p in procs}
        node_rate = result["delivery"]["envelopes_per_s"]
        echo_rate = result["echo"]["requests_per_s"]
        result["node_over_echo"] = node_rate / echo_rate if node_rate and echo_rate else None
        return result
    finally:
        for proc in procs:
            proc.stop()
        await dbs.drop_all()
        if not params.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  kept {tmp}")


def start_profilers(
    procs: list[Proc], directory: Path | None, index: int, *, phase: str = "delivery"
) -> list[subprocess.Popen[bytes]]:
    """py-spy on every node process for one phase, the delivery window or the aftermath
    (--profile; not a dependency: `pip install py-spy` into the venv). Collapsed stacks, idle
    samples and threads kept; the aftermath's files are named `-aftermath`."""
    if directory is None:
        return []
    beside = Path(sys.executable).parent / "py-spy"
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    directory.mkdir(parents=True, exist_ok=True)
    spies = []
    for proc in procs:
        suffix = "" if phase == "delivery" else f"-{phase}"
        out = directory / f"{proc.name}-run{index}{suffix}.txt"
        spies.append(
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--rate",
                    "200",
                    "--idle",
                    "--threads",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(0.5)  # py-spy attaches
    return spies


def stop_profilers(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()


async def echo_baseline(payloads: list[bytes], params: Params, log_dir: Path) -> dict[str, Any]:
    port = free_port()
    proc = Proc(
        "echo",
        [sys.executable, "-m", "bench.echo", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        log_dir / "echo.log",
    )
    await proc.start()
    try:
        window = params.settings.window
        passes = []
        for _ in range(ECHO_PASSES):
            cpu0 = proc.cpu()
            machine0 = procstat.machine_cpu()
            client0 = time.process_time()
            figures = await run_client(
                f"{proc.url}/federation/v1/envelopes",
                payloads,
                concurrency=window,
                connection_limit=window + 4,
            )
            server = (proc.cpu() - cpu0).total
            machine = procstat.machine_cpu() - machine0
            figures["server_cpu_s"] = round(server, 3)
            figures["other_cpu_s"] = round(
                machine.busy - server - (time.process_time() - client0), 3
            )
            passes.append(figures)
        rates = [p["requests_per_s"] for p in passes]
        best = sorted(passes, key=lambda p: p["requests_per_s"])[len(passes) // 2]
        return {
            **best,
            "requests_per_s": statistics.median(rates),
            "passes_requests_per_s": rates,
            "concurrency": window,
            "server_peak_rss_mib": proc.peak_rss(),
        }
    finally:
        proc.stop()


# -- reporting ---------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def summarize(run: dict[str, Any]) -> str:
    d = run["delivery"]
    lines = [
        f"  delivered {d['delivered']}/{run['params_n']} in {d['elapsed_s']:.2f} s: "
        f"{_fmt(d['envelopes_per_s'])} envelopes/s end to end "
        f"(steady 10-90%: {_fmt(d['steady_envelopes_per_s_10_90'])}/s; "
        f"first arrival {_fmt(d['first_arrival_after_release_s'], '.3f')} s after release)",
        f"  latency from release: p50 {_fmt(d['latency_from_release'].get('p50_ms'))} ms, "
        f"p99 {_fmt(d['latency_from_release'].get('p99_ms'))} ms; receipt-back lag p50 "
        f"{_fmt(d['receipt_back_lag'].get('p50_ms'), '.1f')} ms, "
        f"p99 {_fmt(d['receipt_back_lag'].get('p99_ms'), '.1f')} ms",
    ]
    w = d.get("window_cycle", {})
    if w.get("period_ms_median") is not None and run.get("replicas", 1) == 1:
        lines.append(
            f"  record batches: {w['rounds']} of {w['envelopes_per_round_mean']:.1f}; median "
            f"{w['period_ms_median']:.1f} ms each = {w['to_first_store_ms_median']:.1f} ms to "
            f"the receiver's first store + {w['receiver_spread_ms_median']:.1f} ms first to last"
            f" store ({w['receiver_commits_per_round_median']:.0f} commits) + "
            f"{w['back_ms_median']:.1f} ms receipts back"
        )
    m = d.get("machine", {})
    if m:
        if disturbed(run):
            lines.append("  WARNING: other processes used the CPUs during this run (below)")
        lines.append(
            f"  machine during delivery: {m['busy_cores']:.2f} cores busy, steal "
            f"{m['steal_cores']:.2f}, other processes {m['other_cpu_s']:.2f} cpu-s, load before "
            f"{m['loadavg_1m_before']:.2f}, calibration {m['calibration_ms']:.0f} ms"
        )
    if m.get("postgres_server_cpu_s") is not None:
        pg = m["postgres_server_cpu_s"]
        lines.append(
            f"  postgres server: cpu {pg:.2f} s ({pg / d['measured_window_s']:.2f} cores; "
            f"{1000 * pg / run['params_n']:.3f} ms/envelope)"
        )
    for name, c in d["cpu"].items():
        lines.append(
            f"  {name}: cpu {c['total_s']:.2f} s (user {c['user_s']:.2f}, sys {c['system_s']:.2f};"
            f" {c['cores_busy']:.2f} cores; {c['ms_per_envelope']:.3f} ms/envelope), "
            f"peak RSS {_fmt(d['peak_rss_mib'].get(name), '.0f')} MiB"
        )
    if d["dead"] or d["retried_rows"]:
        lines.append(f"  dead letters {d['dead']}, retried rows {d['retried_rows']}")
    a = run.get("aftermath", {})
    if a:
        lines.append(
            f"  receiver applier: {a.get('unapplied_at_end_of_delivery')} unapplied when delivery"
            f" ended, all applied {_fmt(a.get('all_applied_after_release_s'), '.1f')} s after "
            f"release ({_fmt(a.get('applied_per_s'))} applied/s; after the last receipt "
            f"{a.get('drained_after_delivery')} at {_fmt(a.get('drain_per_s'))}/s); replies "
            f"(case.error) sent back: {a.get('receiver_replies')}"
        )
    e = run["echo"]
    lines.append(
        f"  echo baseline: {e['requests_per_s']:.0f} requests/s (median of "
        f"{'/'.join(format(r, '.0f') for r in e['passes_requests_per_s'])}; "
        f"{e['concurrency']} in flight; "
        f"server cpu {e['server_cpu_s']:.2f} s, client cpu {e['client_cpu_s']:.2f} s); "
        f"node/echo = {_fmt(run['node_over_echo'], '.3f')}"
    )
    for name, info in run.get("logs", {}).items():
        if info["problems"]:
            lines.append(f"  {name} log: {info['problems']} warning/error lines, e.g.")
            lines.extend(f"    {line}" for line in info["first"][:3])
    return "\n".join(lines)


def disturbed(run: dict[str, Any]) -> bool:
    """Did other processes use more than 10% of a core-window while we measured?"""
    d = run["delivery"]
    other = d.get("machine", {}).get("other_cpu_s", 0.0)
    return bool(other > 0.1 * d["measured_window_s"])


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def series(get: Any) -> list[float]:
        out = []
        for run in runs:
            with contextlib.suppress(KeyError, TypeError):
                value = get(run)
                if value is not None:
                    out.append(float(value))
        return out

    figures = {
        "envelopes_per_s": series(lambda r: r["delivery"]["envelopes_per_s"]),
        "steady_envelopes_per_s_10_90": series(
            lambda r: r["delivery"]["steady_envelopes_per_s_10_90"]
        ),
        "latency_p50_ms": series(lambda r: r["delivery"]["latency_from_release"]["p50_ms"]),
        "latency_p99_ms": series(lambda r: r["delivery"]["latency_from_release"]["p99_ms"]),
        "receipt_back_lag_p50_ms": series(lambda r: r["delivery"]["receipt_back_lag"]["p50_ms"]),
        "echo_requests_per_s": series(lambda r: r["echo"]["requests_per_s"]),
        "node_over_echo": series(lambda r: r["node_over_echo"]),
        "calibration_ms": series(lambda r: r["delivery"]["machine"]["calibration_ms"]),
        "postgres_server_cpu_ms_per_envelope": series(
            lambda r: 1000 * r["delivery"]["machine"]["postgres_server_cpu_s"] / r["params_n"]
        ),
        "receiver_applied_per_s": series(lambda r: r["aftermath"]["applied_per_s"]),
        "receiver_drain_per_s": series(lambda r: r["aftermath"]["drain_per_s"]),
        "receiver_cpu_ms_per_envelope": series(
            lambda r: next(
                c["ms_per_envelope"] for n, c in r["delivery"]["cpu"].items() if RECEIVER[0] in n
            )
        ),
        "sender_cpu_ms_per_envelope": series(
            lambda r: sum(
                c["ms_per_envelope"] for n, c in r["delivery"]["cpu"].items() if SENDER[0] in n
            )
        ),
    }
    return {
        k: {"median": statistics.median(v), "min": min(v), "max": max(v), "values": v}
        for k, v in figures.items()
        if v
    }


# -- main --------------------------------------------------------------------------------------


def _parse_override(text_value: str) -> tuple[str, Any]:
    key, sep, raw = text_value.partition("=")
    if not sep or key not in FederationSettings.__dataclass_fields__:
        raise argparse.ArgumentTypeError(
            f"--set KEY=VALUE with KEY one of {', '.join(FederationSettings.__dataclass_fields__)}"
        )
    default = getattr(FederationSettings(), key)
    if isinstance(default, bool):
        return key, raw.lower() in ("1", "true", "yes")
    return key, type(default)(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.federation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=5000, help="envelopes to deliver")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--payload-bytes", type=int, default=2048, help="encoded body size")
    parser.add_argument("--type", default="case.progress", help="message type of the envelopes")
    parser.add_argument("--cases", type=int, help="cases the envelopes spread over (N/5)")
    parser.add_argument("--repeats", type=int, default=1, help="fresh nodes each repeat")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="sender processes on the one sender database (PostgreSQL only)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=_parse_override,
        default=[],
        metavar="KEY=VALUE",
        help="a [federation] setting for both nodes (default: the node's defaults)",
    )
    parser.add_argument("--pg-url", default=os.environ.get("TONGBAN_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--timeout", type=float, default=600.0, help="give up delivery after S")
    parser.add_argument(
        "--aftermath-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="after delivery, wait up to S seconds for the receiver to apply everything",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=300.0,
        metavar="S",
        help="before each run wait up to S seconds for other processes to leave the CPUs "
        "(0: do not wait)",
    )
    parser.add_argument(
        "--retry-disturbed",
        type=int,
        default=0,
        metavar="K",
        help="run again (up to K times in all) when other processes used the CPUs during the "
        "measured window; the discarded runs stay in the JSON",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, SQLite)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record py-spy collapsed stacks of each node over the delivery window and, "
        "apart, the aftermath into DIR",
    )
    parser.add_argument("--out", type=Path, help="default bench/results/federation-<db>.json")
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    if args.replicas > 1 and args.database != "postgres":
        parser.error("--replicas needs --database postgres (replicas share one database)")
    params = Params(
        n=args.n,
        database=args.database,
        payload_bytes=args.payload_bytes,
        typ=args.type,
        cases=args.cases or max(1, args.n // 5),
        replicas=args.replicas,
        pg_url=args.pg_url,
        overrides=dict(args.overrides),
        timeout=args.timeout,
        aftermath_timeout=args.aftermath_timeout,
        keep=args.keep,
        profile=args.profile,
        quiet_wait=args.quiet_wait,
        retry_disturbed=args.retry_disturbed,
    )
    out = args.out or REPO / "bench" / "results" / f"federation-{args.database}.json"
    return asyncio.run(_main(params, args.repeats, out))


async def _main(params: Params, repeats: int, out: Path) -> int:
    machine = procstat.machine_info(REPO)
    if params.database == "postgres":
        probe = Databases("postgres", Path("."), params.pg_url)
        machine["postgres"] = await probe.server_version()
    settings = params.settings
    print(
        f"federation bench: n={params.n} database={params.database} "
        f"payload={params.payload_bytes} B type={params.typ} cases={params.cases} "
        f"replicas={params.replicas} window={settings.window} "
        f"poll_interval={settings.poll_interval}"
        + (f" overrides={params.overrides}" if params.overrides else "")
    )
    print(
        f"machine: {machine['cpu_count']} cpus, python {machine['python']}, "
        f"sqlite {machine['sqlite']}, commit {str(machine['git_commit'])[:12]}"
        f"{' (dirty)' if machine['git_dirty'] else ''}"
    )
    runs: list[dict[str, Any]] = []
    discarded: list[dict[str, Any]] = []
    index = 0
    while len(runs) < repeats:
        print(f"run {len(runs) + 1}/{repeats}")
        run = await run_once(params, index)
        index += 1
        run["params_n"] = params.n
        run["replicas"] = params.replicas
        print(summarize(run), flush=True)
        if disturbed(run) and len(discarded) < params.retry_disturbed:
            print("  discarded (other processes used the CPUs); running again")
            discarded.append(run)
            continue
        runs.append(run)
    summary = aggregate(runs)
    if repeats > 1:
        print("summary (median of repeats):")
        for key, value in summary.items():
            print(
                f"  {key}: {value['median']:.4g} (min {value['min']:.4g}, max {value['max']:.4g})"
            )
    report = {
        "bench": "federation",
        "parameters": {
            "n": params.n,
            "database": params.database,
            "payload_bytes": params.payload_bytes,
            "type": params.typ,
            "cases": params.cases,
            "replicas": params.replicas,
            "repeats": repeats,
            "federation_settings": settings.__dict__,
            "overrides": params.overrides,
        },
        "machine": machine,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "summary": summary,
        "runs": runs,
        "discarded_runs": discarded,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"wrote {out}")
    ok = all(r["delivery"]["complete"] for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
