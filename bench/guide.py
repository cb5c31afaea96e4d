"""The public 办事指南 of a region with a catalogue the size of 衡阳's (220 items): how long its
pages take and how big they are.

    python -m bench.guide [--items 220] [--repeat 30] [--out bench/results/guide-sqlite.json]

What it does (see bench/README.md):

1. Makes one fresh node (SQLite, in a temp dir) with ``init_node`` and loads ``--items`` items
   made from the demo catalogue of 衡阳市 (each a copy of a real item under its own code and
   name), then serves it in this process on a real socket.
2. Times, over HTTP, ``--repeat`` times each: the search page (no query; a name across regions,
   from the index; a keyword in one region, from its items; a region and page 3), an item page (the first request of each item makes its QR code; later ones reuse
   it), and the hall's QR sheet cold (every code made) and warm.
3. Prints a table (p50/p95 ms, bytes of the HTML) and writes the JSON (parameters, machine,
   figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import procstat
from node.app import create_app
from node.catalog.loading import load_catalog, parse_catalog
from node.pages.qr import qr_svg
from node.provisioning import init_node
from node.storage.database import Database
from node.storage.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "node" / "demo_catalog" / "430400.toml"
REGION = "430400"


def _items(count: int) -> list[Any]:
    demo = parse_catalog(REGION, DEMO.read_text(encoding="utf-8"))
    return [
        replace(
            demo[n % len(demo)],
            code=f"{REGION}-QT-{n + 1:04d}",
            name=f"{demo[n % len(demo)].name}（{n + 1}）",
        )
        for n in range(count)
    ]


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[max(0, round(0.95 * len(ordered)) - 1)] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def _time(http: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    async with http.get(url, headers={"Accept": "text/html"}) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status}")
    return time.perf_counter() - started, len(body)


async def run(items: int, repeat: int, tmp: Path) -> dict[str, Any]:
    with socket.socket() as sock:  # a free port for the node
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = await init_node(tmp / REGION, region=REGION, name="衡阳市", port=port)
    db = Database(config.database_url)
    try:
        await upgrade(db)
        await load_catalog(db, REGION, _items(items))
    finally:
        await db.dispose()
    qr_svg.cache_clear()
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    base = config.url
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            cases = {
                "search_all": "/guide",
                "search_name": "/guide?q=卫生许可",  # across regions: the index
                "search_keyword_region": f"/guide?region={REGION}&q=卫生证",  # its items
                "search_region_page3": f"/guide?region={REGION}&page=3",
            }
            for name, path in cases.items():
                times, size = [], 0
                for _ in range(repeat):
                    took, size = await _time(http, base + path)
                    times.append(took)
                results[name] = {**_figures(times), "bytes": size}
            cold, warm, size = [], [], 0
            for n in range(repeat):
                path = f"/guide/{REGION}/{REGION}-QT-{n + 1:04d}"
                took, size = await _time(http, base + path)
                cold.append(took)
                took, size = await _time(http, base + path)
                warm.append(took)
            results["item_first_request"] = {**_figures(cold), "bytes": size}
            results["item_again"] = {**_figures(warm), "bytes": size}
            sheet = f"/guide/qr-sheet?region={REGION}"
            took, size = await _time(http, base + sheet)
            results["qr_sheet_cold"] = {**_figures([took]), "bytes": size}
            times = []
            for _ in range(max(3, repeat // 5)):
                took, size = await _time(http, base + sheet)
                times.append(took)
            results["qr_sheet_warm"] = {**_figures(times), "bytes": size}
    finally:
        await runner.cleanup()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=220)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "guide-sqlite.json"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tongban-guide-") as tmp:
        calibration = procstat.calibrate()
        figures = asyncio.run(run(args.items, args.repeat, Path(tmp)))
    print(
        f"办事指南, {args.items} items, {args.repeat} requests each (calibration {calibration:.0f} ms)"
    )
    print(f"  {'page':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'bytes':>10}")
    for name, entry in figures.items():
        print(
            f"  {name:<22}{entry['p50_ms']:>9}{entry['p95_ms']:>9}{entry['max_ms']:>9}"
            f"{entry['bytes']:>10}"
        )
    report = {
        "params": {"items": args.items, "repeat": args.repeat, "database": "sqlite"},
        "calibration_ms": calibration,
        "machine": procstat.machine_info(REPO),
        "figures": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
