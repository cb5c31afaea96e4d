"""The partner directory at national scale: build, sign, verify and apply a directory of N
regions (default 3 000; China has 2 844 county-level regions), and one fetch over HTTP.

    python -m bench.directory [--regions 3000] [--repeats 5] [--out bench/results/directory.json]

Each repeat makes N regions with fresh Ed25519 keys (not timed), then times, in this process:

- ``build``: the directory claims from the N entries, every entry checked
  (``protocol.directory.directory_claims``);
- ``sign``: the claims checked again, JSON-encoded and signed (``sign_directory``);
- ``verify``: the token parsed and verified, every entry and key loaded (``verify_directory``);
- ``apply``: the verified directory put in force in a node's trust store (``TrustStore.
  apply_directory``: the merged partner and key sets rebuilt, learned keys read from a SQLite
  database, one swap);
- ``fetch_apply``: a node's ``DirectoryFollower.refresh()`` against ``tongban directory
  serve``'s app on a real socket: GET, verify (in a thread), keep the token (fsync), apply;
- ``not_modified``: the next ``refresh()``: a conditional GET answered 304.

Figures are the median of the repeats, in milliseconds; the JSON has every repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench import procstat
from node.config import NodeConfig
from node.federation.directory import DirectoryFollower
from node.federation.directory_authority import init_authority
from node.federation.directory_server import directory_app
from node.federation.trust import TrustStore
from node.metrics import Metrics
from node.provisioning import init_node
from node.storage.database import Database
from protocol.directory import AuthorityKey, directory_claims, sign_directory, verify_directory
from tests.support.directory import AUTHORITY, DAY, synthetic_entries

REPO = Path(__file__).resolve().parents[1]


def ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


async def one_run(count: int, tmp: Path, serial: int) -> dict[str, Any]:
    listed = synthetic_entries(count, keys=2)  # every region in the middle of a rotation
    authority = init_authority(tmp / f"authority-{serial}", AUTHORITY)
    now = int(time.time())

    start = time.perf_counter()
    claims = directory_claims(
        iss=AUTHORITY, serial=serial, iat=now, exp=now + 7 * DAY, entries=listed
    )
    build = ms(start)

    start = time.perf_counter()
    token = sign_directory(claims, authority.key, authority=AUTHORITY)
    sign = ms(start)

    keys = [AuthorityKey.from_text(AUTHORITY, authority.public_key)]
    start = time.perf_counter()
    directory = verify_directory(token, keys, now=time.time())
    verify = ms(start)

    node_dir = tmp / f"node-{serial}"
    served = tmp / f"directory-{serial}.jwt"
    served.write_text(token, encoding="ascii")
    runner = web.AppRunner(directory_app(served))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    toml = (
        f'[directory]\nurl = "http://127.0.0.1:{port}/directory"\nauthority = "{AUTHORITY}"\n'
        f'authority_keys = ["{authority.public_key}"]\n'
    )
    config: NodeConfig = await init_node(
        node_dir, region="430523", name="邵阳县", port=8400, extra_toml=toml
    )
    db = Database(config.database_url)
    try:
        trust = TrustStore(db, config.partners_file, config.federation)
        await trust.load()
        start = time.perf_counter()
        await trust.apply_directory(directory, own_region=config.region)
        apply = ms(start)
        assert len(trust.partners) == count

        fresh = TrustStore(db, config.partners_file, config.federation)
        await fresh.load()
        follower = DirectoryFollower(config, fresh, Metrics())
        await follower.start(follow=False)
        try:
            start = time.perf_counter()
            outcome = await follower.refresh()
            fetch_apply = ms(start)
            assert outcome in ("applied", "unchanged"), outcome
            start = time.perf_counter()
            outcome = await follower.refresh()
            not_modified = ms(start)
            assert outcome == "not_modified", outcome
        finally:
            await follower.stop()
    finally:
        await db.dispose()
        await runner.cleanup()
    return {
        "regions": count,
        "token_bytes": len(token),
        "build_ms": build,
        "sign_ms": sign,
        "verify_ms": verify,
        "apply_ms": apply,
        "fetch_apply_ms": fetch_apply,
        "not_modified_ms": not_modified,
    }


async def run(count: int, repeats: int) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="tongban-bench-directory-") as tmp:
        for serial in range(1, repeats + 1):
            runs.append(await one_run(count, Path(tmp), serial))
    names = [k for k in runs[0] if k.endswith("_ms")]
    median = {name: statistics.median(r[name] for r in runs) for name in names}
    return {
        "regions": count,
        "repeats": repeats,
        "token_bytes": runs[0]["token_bytes"],
        "median": median,
        "runs": runs,
        "calibration_ms": procstat.calibrate(),
        "machine": procstat.machine_info(REPO),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--regions", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "directory.json")
    args = parser.parse_args()
    result = asyncio.run(run(args.regions, args.repeats))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    m = result["median"]
    print(
        f"directory of {result['regions']} regions, {result['token_bytes']} bytes "
        f"(median of {result['repeats']}, calibration {result['calibration_ms']:.0f} ms):"
    )
    for name, value in m.items():
        print(f"  {name[:-3]:<13} {value:8.1f} ms")
    print(f"  → {args.out}")


if __name__ == "__main__":
    main()
