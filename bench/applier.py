"""The applier alone: N stored messages applied by a whole node, in this process.

    python -m bench.applier [--n 5000] [--type case.progress] [--database sqlite|postgres]
                            [--profile /tmp/applier.prof] [--out bench/results/applier-<db>.json]

What it does (bench/README.md):

1. Makes two nodes (sender 430523, receiver 430400) with ``init_node`` + ``link_all`` in a temp
   dir (SQLite files, or fresh PostgreSQL databases).
2. Starts the receiver's whole application in this process (``create_app`` + ``AppRunner``,
   no listening socket): its applier runs with the case domain's handler, as in ``tongban
   run``.
3. Stores N envelopes signed by the sender in the receiver's inbound tables, as the inbound
   service does (sealed tokens; N/5 cases, ``seq`` 1..5 each), in one transaction, then wakes
   the applier and times it until every message is applied. The bench's cases do not exist on
   the receiver: each ``case.progress`` is refused (``unknown_case``) and answered with a signed
   ``case.error`` in the outbox, in the applying transaction (``--type case.error``: refused
   and not answered). The receiver's delivery is stopped: the replies stay in its outbox.
4. Prints messages applied per second, CPU seconds of this process per message, and with
   ``--profile`` writes a cProfile of the applying window.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from bench import procstat
from bench.federation import DEFAULT_PG, Databases, make_body, make_pair
from node.app import create_app
from node.appkeys import FEDERATION
from node.config import NodeConfig
from node.federation.identity import NodeIdentity
from node.federation.models import INBOUND_TOKEN, inbound_messages, outbox
from node.storage.database import Database
from node.storage.sealing import load_sealer
from protocol.envelope import new_claims, sign_envelope
from tests.support.inbound import StoredInbound, insert_inbound, stored_inbound

REPO = Path(__file__).resolve().parent.parent
#: Rows per insert while storing the messages.
STORE_BATCH = 1000
#: Messages per case (``seq`` 1..CASE_LENGTH): applied in order, one per case per pass.
CASE_LENGTH = 5


async def store_messages(
    receiver: NodeConfig, sender: NodeConfig, n: int, typ: str, tag: str
) -> None:
    """Sign N envelopes with the sender's key and store them as received by the receiver."""
    body, blobs, _origin = make_body(typ, 512)
    sender_db = Database(sender.database_url)
    try:
        identity = await NodeIdentity.load(sender, sender_db)
    finally:
        await sender_db.dispose()
    sealer = load_sealer(receiver.dir)
    now = time.time()
    stored: list[StoredInbound] = []
    for i in range(n):
        claims = new_claims(
            iss=identity.region,
            aud=receiver.region,
            typ=typ,
            xt=f"bench-{tag}-{i // CASE_LENGTH:06d}",
            seq=i % CASE_LENGTH + 1,
            body=body,
            blobs=blobs or None,
            now=now,
        )
        token = sign_envelope(claims, identity.private_key, identity.kid)
        stored.append(
            stored_inbound(
                token,
                received_at=now + i * 1e-6,
                receipt="bench",
                stored_as=sealer.seal(token, INBOUND_TOKEN),
            )
        )
    db = Database(receiver.database_url)
    try:
        for start in range(0, n, STORE_BATCH):
            async with db.write() as conn:
                await insert_inbound(conn, stored[start : start + STORE_BATCH])
    finally:
        await db.dispose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tongban-bench-applier-"))
    dbs = Databases(args.database, tmp, args.pg_url)
    try:
        sender, receiver = await make_pair(tmp, dbs)
        app = create_app(receiver)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            federation = app[FEDERATION]
            applier = federation.applier
            assert applier is not None
            await asyncio.sleep(1.0)  # start-up work settles
            # The replies stay in the outbox: this bench times applying, not delivering (the
            # sender is not running; bench.federation has both).
            await federation.delivery.stop()
            print(f"  storing {args.n} {args.type} messages ...", flush=True)
            await store_messages(receiver, sender, args.n, args.type, os.urandom(4).hex())
            db = federation.db
            unapplied = select(func.count()).where(inbound_messages.c.applied_at.is_(None))
            profiler = cProfile.Profile() if args.profile else None
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            applier.wake()
            left = args.n
            while left:
                await asyncio.sleep(0.05)
                async with db.read() as conn:
                    left = (await conn.execute(unapplied)).scalar_one()
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            async with db.read() as conn:
                outcomes = dict(
                    (
                        await conn.execute(
                            select(inbound_messages.c.outcome, func.count()).group_by(
                                inbound_messages.c.outcome
                            )
                        )
                    ).all()
                )
                replies = (
                    await conn.execute(select(func.count()).select_from(outbox))
                ).scalar_one()
        finally:
            await runner.cleanup()
    finally:
        await dbs.drop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "n": args.n,
        "type": args.type,
        "database": args.database,
        "elapsed_s": elapsed,
        "applied_per_s": args.n / elapsed,
        "cpu_s": cpu,
        "cpu_ms_per_message": cpu * 1000 / args.n,
        "outcomes": outcomes,
        "replies_queued": replies,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--type", default="case.progress")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("TONGBAN_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--profile", help="write a cProfile of the applying window here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    machine = {"cpus": os.cpu_count(), "calibration_ms": procstat.calibrate()}
    result = asyncio.run(run(args))
    result["machine"] = machine
    print(
        f"applied {result['n']} {result['type']} in {result['elapsed_s']:.2f} s: "
        f"{result['applied_per_s']:.0f} messages/s, "
        f"{result['cpu_ms_per_message']:.2f} ms CPU each (this process); "
        f"outcomes {result['outcomes']}, replies queued {result['replies_queued']}; "
        f"calibration {machine['calibration_ms']:.0f} ms"
    )
    out = args.out or REPO / "bench" / "results" / f"applier-{args.database}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
