"""Would signature checks in a worker thread free a busy event loop? (The question the
profiles of bench.federation ask: a node's loop is its limit, Ed25519 a quarter of it, and
libsodium releases the GIL during the math.)

    python -m bench.offload [--seconds 5] [--repeats 2] [--out bench/results/offload.json]

A loop serves 64 concurrent "requests", each some Python work (JSON round trips, about what
a request's parsing costs), one libsodium signature check of a 600-byte message, the same
Python work again, then a turn of the loop. ``inline`` checks on the loop's thread;
``thread`` hands each check to one worker thread, which takes every queued check at once and
hands the batch's results back with one ``call_soon_threadsafe``. Prints requests/s and the
process's CPU in cores for each, alternated; writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign_open

from bench import procstat

REPO = Path(__file__).resolve().parent.parent
CONCURRENT = 64
_KEY = Ed25519PrivateKey.generate()
_PUBLIC = _KEY.public_key().public_bytes_raw()
_MESSAGE = b"x" * 600
_SIGNED = _KEY.sign(_MESSAGE) + _MESSAGE
_DOC = {"a": list(range(50)), "b": "y" * 200}


def _python_work() -> None:
    for _ in range(8):
        json.loads(json.dumps(_DOC))


def _check() -> None:
    crypto_sign_open(_SIGNED, _PUBLIC)


async def run(mode: str, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()

    def deliver(batch: list[asyncio.Future[None]]) -> None:
        for future in batch:
            if not future.done():
                future.set_result(None)

    def worker() -> None:
        while True:
            first = jobs.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    jobs.put(None)
                    break
                batch.append(job)
            for _ in batch:
                _check()
            loop.call_soon_threadsafe(deliver, batch)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    done = 0
    stop = time.monotonic() + seconds

    async def request() -> None:
        nonlocal done
        while time.monotonic() < stop:
            _python_work()
            if mode == "inline":
                _check()
            else:
                future: asyncio.Future[None] = loop.create_future()
                jobs.put(future)
                await future
            _python_work()
            done += 1
            await asyncio.sleep(0)

    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(request() for _ in range(CONCURRENT)))
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    jobs.put(None)
    thread.join()
    return {
        "mode": mode,
        "requests_per_s": done / elapsed,
        "cores": cpu / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "offload.json")
    args = parser.parse_args(argv)
    calibration = procstat.calibrate()
    runs = []
    for _ in range(args.repeats):
        for mode in ("inline", "thread"):
            result = asyncio.run(run(mode, args.seconds))
            runs.append(result)
            print(
                f"{mode:6s} {result['requests_per_s']:7.0f} requests/s, "
                f"{result['cores']:.2f} cores (calibration {calibration:.0f} ms)"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"calibration_ms": calibration, "runs": runs}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
