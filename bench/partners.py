"""National scale: a node with thousands of partners, nearly all unreachable.

    python -m bench.partners [--partners 3000] [--compare 5] [--idle-seconds 60]
                             [--envelopes 300] [--backlog 1000] [--database sqlite|postgres]
                             [--catalogue on|off] [--out bench/results/partners-<db>.json]

One run (see bench/README.md for the details): three real node processes. The hub 430523
has ``--partners`` partners in its partners.toml: the live partner 430400, the partner
430300 that is down and comes back later, and the rest unreachable regions (real Ed25519
keys made now, URLs to closed local ports). Measured on the hub:

1. ready: from spawning the process to ``/readyz`` answering 200; RSS then;
2. idle: CPU of the hub over ``--idle-seconds`` with nothing due, % of one core;
3. receipt latency: ``--envelopes`` envelopes signed by the live partner's key, POSTed one
   by one from this process to the hub: request to verified-ready receipt, p50/p99;
4. delivery latency: each of those envelopes names a case the hub does not hold, so the
   hub's case domain answers each with ``case.error`` (queued in the applier's transaction:
   the in-process wake-up). ``delivered_at − created_at`` of those outbox rows, p50/p99;
5. comeback: ``--backlog`` envelopes queued for 430300 while it is down, tried, then pushed
   a day's backoff away (``next_attempt_at`` +24 h); 430300 starts and says one thing to
   the hub. Time until its backlog is stored, exactly once, and applied in seq order.

The same run with ``--compare`` partners gives the delivery latency to compare with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select, update

from bench import procstat
from bench.federation import (
    DEFAULT_PG,
    Databases,
    Proc,
    _percentiles,
    node_proc,
    wait_for_quiet,
)
from node.catalog.models import partner_catalogs
from node.config import NodeConfig
from node.federation.identity import NodeIdentity
from node.federation.models import inbound_envelopes, inbound_messages, outbox
from node.federation.outbox import Outbox
from node.provisioning import init_node, link_all
from node.storage.database import Database
from node.storage.sealing import load_sealer
from protocol.envelope import new_claims, sign_envelope
from protocol.messages import example_body
from tests.support.partners import pad_partners_file

REPO = Path(__file__).resolve().parent.parent
HUB = ("430523", "邵阳县")
LIVE = ("430400", "衡阳市")
COMEBACK = ("430300", "湘潭市")
BODY = example_body("case.progress")[0]
#: Targets of the issue (national scale, part 1), checked at the end.
TARGETS = {
    "ready_s": 2.0,
    "rss_mib": 200.0,
    "idle_core_pct": 2.0,
    "receipt_p99_ms": 50.0,
    "delivery_vs_compare": 1.10,
}
#: Pause between the live partner's envelopes (a steady trickle, not a burst).
SPACING = 0.02
#: Idle CPU is also sampled in slices of this many seconds (median and max reported).
IDLE_SLICE = 5.0
#: The hub's log lines for partner catalogues that could not be fetched: one line for every
#: minute's failures (``failures``: how many), or one per failure (before 2026-12-03).
CATALOGUE_FAILED = "partner catalogues not refreshed"
CATALOGUE_FAILED_ONE = "partner catalogue not refreshed"


def _failed_fetches(proc: Proc) -> int:
    """Failed catalogue fetches the hub has logged so far. The hub logs them a minute's worth
    at a time, so a count between two moments is only as exact as that."""
    try:
        text = proc.log.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    count = 0
    for line in text.splitlines():
        if "not refreshed" not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == CATALOGUE_FAILED:
            count += int(entry.get("failures", 0))
        elif entry.get("msg") == CATALOGUE_FAILED_ONE:
            count += 1
    return count


@dataclass
class Params:
    partners: int
    compare: int
    idle_seconds: float
    envelopes: int
    backlog: int
    database: str
    pg_url: str
    quiet_wait: float
    keep: bool
    catalogue: bool = True
    #: How the unreachable partners fail: "refusing" (a closed local port: refused at once)
    #: or "silent" (SYNs dropped, as behind a real network: every connect times out).
    dead: str = "refusing"


def closed_port() -> int:
    """A local port nothing listens on (a partner that is down answers like this)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def silent_listener() -> socket.socket:
    """A socket on every local address that listens and never accepts: once its one-place
    queue is full, the kernel drops further SYNs to it, so a connect to any 127.a.b.c at its
    port times out like one to a partner behind a network that is down."""
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))
    sock.listen(0)
    _SILENT.append(sock)  # open until the process ends
    return sock


_SILENT: list[socket.socket] = []


async def _wait_ready(url: str, spawned: float, timeout: float = 120.0) -> float:
    """Seconds from ``spawned`` (monotonic) to ``/readyz`` answering 200."""
    deadline = spawned + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return time.monotonic() - spawned
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{url} not ready after {timeout} s")


async def _poll(check: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval)
    return False


async def _identity(config: NodeConfig) -> NodeIdentity:
    db = Database(config.database_url)
    try:
        return await NodeIdentity.load(config, db)
    finally:
        await db.dispose()


async def _enqueue(config: NodeConfig, partner: str, plan: list[tuple[str, int]]) -> None:
    """Queue ``plan`` ((xt, count) pairs) in ``config``'s outbox from this process."""
    db = Database(config.database_url)
    try:
        identity = await NodeIdentity.load(config, db)
        box = Outbox(identity, wake=lambda _p: None, sealer=load_sealer(config.dir))
        async with db.write() as conn:
            for xt, count in plan:
                for _ in range(count):
                    await box.enqueue(conn, partner=partner, typ="case.progress", xt=xt, body=BODY)
    finally:
        await db.dispose()


async def receipt_latency(hub: NodeConfig, live: NodeConfig, count: int) -> dict[str, Any]:
    """POST ``count`` envelopes signed by the live partner to the hub, one at a time."""
    identity = await _identity(live)
    tag = uuid.uuid4().hex[:8]
    times: list[float] = []
    failed = 0
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            claims = new_claims(
                iss=live.region,
                aud=hub.region,
                typ="case.progress",
                xt=f"XT-P-{tag}-{i:05d}",
                seq=1,
                body=BODY,
                blobs=None,
                now=time.time(),
            )
            token = sign_envelope(claims, identity.private_key, identity.kid)
            started = time.perf_counter()
            async with session.post(
                f"{hub.url}/federation/v1/envelopes",
                data=token.encode("ascii"),
                headers={"Content-Type": "application/jose", "Accept": "application/jose"},
            ) as resp:
                await resp.read()
                ok = resp.status == 200
            times.append(time.perf_counter() - started)
            failed += 0 if ok else 1
            await asyncio.sleep(SPACING)
    return {"count": count, "failed": failed, **_percentiles(times)}


async def delivery_latency(hub_db: Database, live: str, count: int) -> dict[str, Any]:
    """The hub's answers (case.error) to the live partner: created -> delivered."""
    mine = (outbox.c.partner == live) & (outbox.c.typ == "case.error")

    async def answered() -> bool:
        async with hub_db.read() as conn:
            done = (
                await conn.execute(
                    select(func.count()).where(mine, outbox.c.delivered_at.is_not(None))
                )
            ).scalar_one()
        return int(done) >= count

    complete = await _poll(answered, timeout=120)
    async with hub_db.read() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.created_at, outbox.c.delivered_at).where(
                    mine, outbox.c.delivered_at.is_not(None)
                )
            )
        ).all()
    return {
        "complete": complete,
        "count": len(rows),
        **_percentiles([r.delivered_at - r.created_at for r in rows]),
    }


async def comeback(
    hub: NodeConfig, back: NodeConfig, hub_db: Database, backlog: int, log_dir: Path
) -> tuple[dict[str, Any], Proc]:
    """A backlog for a partner that is down, tried and a day's backoff away; then it is
    back and speaks: how soon does it have everything, once and in order?"""
    cases = max(1, backlog // 20)
    per_case = [
        (f"XT-B-{c:04d}", backlog // cases + (1 if c < backlog % cases else 0))
        for c in range(cases)
    ]
    mine = outbox.c.partner == back.region
    await _enqueue(hub, back.region, per_case)

    async def tried() -> bool:
        async with hub_db.read() as conn:
            return bool(
                (await conn.execute(select(func.max(outbox.c.attempts)).where(mine))).scalar()
            )

    await _poll(tried, timeout=60)
    # A day of outage: the rows were tried over and over and wait their capped backoff.
    async with hub_db.write() as conn:
        await conn.execute(
            update(outbox)
            .where(mine, outbox.c.delivered_at.is_(None))
            .values(attempts=outbox.c.attempts + 200, next_attempt_at=time.time() + 86400)
        )
    # What the partner has to say when it is back (queued while it was down).
    await _enqueue(back, hub.region, [(f"XT-HELLO-{uuid.uuid4().hex[:6]}", 1)])
    proc = node_proc(back, log_dir)
    await proc.start()
    up = time.monotonic()
    back_db = Database(back.database_url)
    backlog_rows = (inbound_envelopes.c.iss == hub.region) & (
        inbound_envelopes.c.typ == "case.progress"
    )
    try:

        async def stored() -> bool:
            async with back_db.read() as conn:
                n = (
                    await conn.execute(
                        select(func.count()).select_from(inbound_envelopes).where(backlog_rows)
                    )
                ).scalar_one()
            return int(n) >= backlog

        first_at: float | None = None

        async def first() -> bool:
            async with back_db.read() as conn:
                n = (
                    await conn.execute(
                        select(func.count()).select_from(inbound_envelopes).where(backlog_rows)
                    )
                ).scalar_one()
            return int(n) > 0

        if await _poll(first, timeout=600, interval=0.02):
            first_at = time.monotonic() - up
        complete = await _poll(stored, timeout=600, interval=0.05)
        all_at = time.monotonic() - up

        async def applied() -> bool:
            async with back_db.read() as conn:
                n = (
                    await conn.execute(
                        select(func.count()).where(
                            inbound_messages.c.iss == hub.region,
                            inbound_messages.c.typ == "case.progress",
                            inbound_messages.c.applied_at.is_not(None),
                        )
                    )
                ).scalar_one()
            return int(n) >= backlog

        await _poll(applied, timeout=300)
        async with back_db.read() as conn:
            envelopes = (
                await conn.execute(
                    select(inbound_envelopes.c.xt, inbound_envelopes.c.seq).where(backlog_rows)
                )
            ).all()
            messages = (
                await conn.execute(
                    select(
                        inbound_messages.c.xt,
                        inbound_messages.c.seq,
                        inbound_messages.c.applied_at,
                    ).where(
                        inbound_messages.c.iss == hub.region,
                        inbound_messages.c.typ == "case.progress",
                    )
                )
            ).all()
    finally:
        await back_db.dispose()
    keys = [(r.xt, r.seq) for r in envelopes]
    by_case: dict[str, list[tuple[int, float]]] = {}
    for m in messages:
        if m.applied_at is not None:
            by_case.setdefault(m.xt, []).append((m.seq, m.applied_at))
    in_order = all(
        [s for s, _a in sorted(v, key=lambda p: (p[1], p[0]))] == sorted(s for s, _a in v)
        for v in by_case.values()
    )
    expected = sum(n for _xt, n in per_case)
    return (
        {
            "backlog": expected,
            "complete": complete,
            "first_s": first_at,
            "all_s": all_at,
            "stored": len(keys),
            "stored_once": len(keys) == len(set(keys)) == expected,
            "applied": sum(len(v) for v in by_case.values()),
            "applied_in_seq_order": in_order,
        },
        proc,
    )


async def run_once(params: Params, partners: int, idle_seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tongban-partners-"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    dbs = Databases(params.database, tmp, params.pg_url)
    procs: list[Proc] = []
    result: dict[str, Any] = {
        "partners": partners,
        "catalogue_refresher": params.catalogue,
        "dead": params.dead,
        "tmp": str(tmp),
    }
    hub_db: Database | None = None
    try:
        configs = []
        for region, name in (HUB, LIVE, COMEBACK):
            configs.append(
                await init_node(
                    tmp / region,
                    region=region,
                    name=name,
                    port=closed_port(),
                    database_url=await dbs.new_url(region),
                )
            )
        await link_all(configs)
        hub, live, back = configs
        made = time.perf_counter()
        if params.dead == "silent":
            silent = silent_listener()
            port = silent.getsockname()[1]
            listed = pad_partners_file(
                hub.partners_file,
                partners,
                url=lambda i: f"http://127.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 2}:{port}",
            )
        else:
            listed = pad_partners_file(hub.partners_file, partners, port=closed_port)
        result["partners_file"] = {
            "entries": len(listed),
            "bytes": hub.partners_file.stat().st_size,
            "made_s": round(time.perf_counter() - made, 2),
        }
        if params.quiet_wait > 0:
            result["quiet"] = await wait_for_quiet(params.quiet_wait)
        live_proc = node_proc(live, log_dir)
        procs.append(live_proc)
        await live_proc.start()

        hub_proc = node_proc(hub, log_dir)
        if not params.catalogue:
            hub_proc.argv[1:3] = ["-m", "bench.node_without_catalogue"]
        procs.append(hub_proc)
        spawned = time.monotonic()
        await hub_proc.start()
        result["ready_s"] = await _wait_ready(hub.url, spawned)
        ready_at = time.time()
        # CPU the hub used to get there: less at the mercy of other processes than the wall
        # clock on a shared machine.
        result["ready_cpu_s"] = hub_proc.cpu().total
        result["rss_ready_mib"] = procstat.rss_mib(hub_proc.pid)
        print(
            f"  ready in {result['ready_s']:.2f} s ({result['ready_cpu_s']:.2f} s of CPU), "
            f"RSS {result['rss_ready_mib']:.0f} MiB"
        )

        await asyncio.sleep(3.0)  # start-up work done
        before, machine_before = hub_proc.cpu(), procstat.machine_cpu()
        catalogue_before = _failed_fetches(hub_proc)
        slices: list[float] = []
        left = idle_seconds
        while left > 0:
            step = min(IDLE_SLICE, left)
            mark = hub_proc.cpu()
            await asyncio.sleep(step)
            slices.append(100 * (hub_proc.cpu() - mark).total / step)
            left -= step
        used = (hub_proc.cpu() - before).total
        machine = procstat.machine_cpu() - machine_before
        result["idle"] = {
            "seconds": idle_seconds,
            "core_pct": 100 * used / idle_seconds,
            "slice_s": IDLE_SLICE,
            "slice_core_pct": {
                "median": statistics.median(slices),
                "min": min(slices),
                "max": max(slices),
            },
            # Other work of the node that is not delivery: the catalogue refresher fetches
            # every partner's catalogue (node/catalog/refresher.py) and retries failures.
            "catalogue_fetch_failures": _failed_fetches(hub_proc) - catalogue_before,
            "machine_busy_cores": machine.busy / idle_seconds,
        }
        result["rss_idle_mib"] = procstat.rss_mib(hub_proc.pid)
        idle = result["idle"]
        print(
            f"  idle: {idle['core_pct']:.2f} % of a core over {idle_seconds:.0f} s "
            f"(median {IDLE_SLICE:.0f} s slice {idle['slice_core_pct']['median']:.2f} %, "
            f"max {idle['slice_core_pct']['max']:.2f} %; "
            f"{idle['catalogue_fetch_failures']} failed catalogue fetches meanwhile)"
        )

        if params.catalogue:
            # When the hub first held the live partner's catalogue (its first fetch is planned
            # at a random start slot among all partners': up to partners / 10 s after start).
            probe = Database(hub.database_url)
            try:
                async with probe.read() as conn:
                    fetched = (
                        await conn.execute(
                            select(partner_catalogs.c.fetched_at).where(
                                partner_catalogs.c.region == live.region
                            )
                        )
                    ).scalar()
            finally:
                await probe.dispose()
            result["live_catalogue_after_ready_s"] = (
                None if fetched is None else round(fetched - ready_at, 1)
            )
            print(
                f"  the live partner's catalogue: {result['live_catalogue_after_ready_s']} s after ready"
            )
        failed_before = _failed_fetches(hub_proc)
        result["receipt"] = await receipt_latency(hub, live, params.envelopes)
        hub_db = Database(hub.database_url)
        result["delivery"] = await delivery_latency(hub_db, live.region, params.envelopes)
        result["delivery"]["catalogue_fetch_failures"] = _failed_fetches(hub_proc) - failed_before
        print(
            f"  receipt p50 {result['receipt'].get('p50_ms', 0):.1f} ms "
            f"p99 {result['receipt'].get('p99_ms', 0):.1f} ms; delivery p50 "
            f"{result['delivery'].get('p50_ms', 0):.1f} ms "
            f"p99 {result['delivery'].get('p99_ms', 0):.1f} ms"
        )
        if params.backlog > 0:
            failed_before = _failed_fetches(hub_proc)
            result["comeback"], back_proc = await comeback(
                hub, back, hub_db, params.backlog, log_dir
            )
            procs.append(back_proc)
            result["comeback"]["catalogue_fetch_failures"] = (
                _failed_fetches(hub_proc) - failed_before
            )
            print(f"  comeback: {result['comeback']}")
        result["rss_peak_mib"] = hub_proc.peak_rss()
        result["log_problems"] = {p.name: p.log_problems() for p in procs}
    finally:
        if hub_db is not None:
            await hub_db.dispose()
        for proc in reversed(procs):
            proc.stop()
        await dbs.drop_all()
        if not params.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def verdict(main: dict[str, Any], compare: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ready_s": (main["ready_s"], main["ready_s"] < TARGETS["ready_s"]),
        "rss_mib": (main["rss_peak_mib"], main["rss_peak_mib"] < TARGETS["rss_mib"]),
        "idle_core_pct": (
            main["idle"]["core_pct"],
            main["idle"]["core_pct"] < TARGETS["idle_core_pct"],
        ),
        "receipt_p99_ms": (
            main["receipt"]["p99_ms"],
            main["receipt"]["p99_ms"] < TARGETS["receipt_p99_ms"],
        ),
    }
    if compare is not None:
        ratio = main["delivery"]["p50_ms"] / compare["delivery"]["p50_ms"]
        out["delivery_vs_compare"] = (ratio, ratio <= TARGETS["delivery_vs_compare"])
    if "comeback" in main:
        back = main["comeback"]
        out["comeback_complete"] = (
            back["all_s"],
            bool(back["complete"] and back["stored_once"] and back["applied_in_seq_order"]),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.partners", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--partners", type=int, default=3000, help="partners of the hub")
    parser.add_argument(
        "--compare", type=int, default=5, help="the same run with this many (0: skip)"
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--envelopes", type=int, default=300, help="from the live partner")
    parser.add_argument("--backlog", type=int, default=1000, help="for the comeback (0: skip)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("TONGBAN_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--quiet-wait", type=float, default=300.0, metavar="S")
    parser.add_argument(
        "--catalogue",
        choices=("on", "off"),
        default="on",
        help="off: the hub runs without the partner catalogue refresher "
        "(bench.node_without_catalogue), to tell its cost from delivery's",
    )
    parser.add_argument(
        "--dead",
        choices=("refusing", "silent"),
        default="refusing",
        help="unreachable partners refuse at once (closed port) or drop SYNs (connects time out)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, SQLite)")
    parser.add_argument("--out", type=Path, help="default bench/results/partners-<db>.json")
    args = parser.parse_args(argv)
    if args.partners < 3:
        parser.error("--partners must be at least 3 (live, comeback, one unreachable)")
    params = Params(
        partners=args.partners,
        compare=args.compare,
        idle_seconds=args.idle_seconds,
        envelopes=args.envelopes,
        backlog=args.backlog,
        database=args.database,
        pg_url=args.pg_url,
        quiet_wait=args.quiet_wait,
        keep=args.keep,
        catalogue=args.catalogue == "on",
        dead=args.dead,
    )
    suffix = "" if params.catalogue else "-nocatalogue"
    out = args.out or REPO / "bench" / "results" / f"partners-{args.database}{suffix}.json"
    return asyncio.run(_main(params, out))


async def _main(params: Params, out: Path) -> int:
    machine = procstat.machine_info(REPO)
    print(
        f"partners bench: {params.partners} partners (compare {params.compare}), "
        f"database={params.database}, idle {params.idle_seconds:.0f} s, "
        f"{params.envelopes} envelopes, backlog {params.backlog}, "
        f"catalogue refresher {'on' if params.catalogue else 'off'}"
    )
    print(f"run: {params.partners} partners")
    main_run = await run_once(params, params.partners, params.idle_seconds)
    compare_run = None
    if params.compare >= 3:
        print(f"run: {params.compare} partners")
        compare_run = await run_once(
            Params(**{**params.__dict__, "backlog": 0}),
            params.compare,
            min(params.idle_seconds, 20.0),
        )
    checks = verdict(main_run, compare_run)
    print("targets:")
    for name, (value, met) in checks.items():
        limit = TARGETS.get(name, "")
        print(f"  {name}: {value:.3g} (target {limit}) {'met' if met else 'NOT met'}")
    report = {
        "bench": "partners",
        "parameters": params.__dict__ | {"pg_url": None},
        "targets": TARGETS,
        "checks": {k: {"value": v, "met": m} for k, (v, m) in checks.items()},
        "machine": machine,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": main_run,
        "compare_run": compare_run,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"wrote {out}")
    return 0 if all(m for _v, m in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
