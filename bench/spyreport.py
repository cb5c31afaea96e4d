"""Summarise a py-spy collapsed-stack file (``bench.federation --profile DIR`` writes them).

    python -m bench.spyreport DIR/node-430400-run0.txt [--top 25] [--thread MainThread]

Prints, per thread, the share of samples; then for the chosen thread (the event loop by
default) the share of samples spent waiting (the loop's selector), inclusive shares of the
node's own functions and of libraries, and the hottest leaf functions.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")
IDLE_LEAVES = (
    "select (selectors.py",
    "EpollSelector.select",
    "wait (threading.py",
    "get (queue.py",
)

#: Inclusive buckets: the first pattern found in a stack (outermost first) names it.
BUCKETS = [
    ("federation.delivery.claim", "Delivery.claim"),
    ("federation.delivery.record", "Delivery.record"),
    ("federation.delivery.deliver", "Delivery.deliver"),
    ("federation.inbound._commit", "InboundService._commit"),
    ("federation.inbound.receive", "InboundService.receive"),
    ("federation.applier", "Applier."),
    ("federation.runtime.heard_from", "heard_from"),
    ("views.envelopes (HTTP handler)", "envelopes (node/federation/views.py"),
    ("aiohttp server", "aiohttp/web_protocol.py"),
    ("aiohttp client", "aiohttp/client"),
    ("sqlalchemy", "sqlalchemy/"),
]


def parse(path: Path) -> list[tuple[str, list[str], int]]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        parts = match.group("stack").split(";")
        thread = parts[0].split(": ", 1)[-1].strip()
        rows.append((thread, parts[1:], int(match.group("count"))))
    return rows


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match.group("file")
    return f"{match.group('func')} ({file})"


def report(path: Path, top: int, thread: str) -> str:
    rows = parse(path)
    per_thread: Counter[str] = Counter()
    for name, _stack, count in rows:
        per_thread[re.sub(r"-\d+ ", " ", name)] += count
    total = sum(per_thread.values())
    out = [f"{path.name}: {total} samples"]
    for name, count in per_thread.most_common(8):
        out.append(f"  thread {name}: {count} ({100 * count / total:.1f}%)")

    mine = [(stack, count) for name, stack, count in rows if name.startswith(thread)]
    n = sum(c for _s, c in mine)
    if not n:
        return "\n".join(out)
    idle = sum(c for s, c in mine if s and any(s[-1].startswith(p) for p in IDLE_LEAVES))
    out.append(f"{thread}: {n} samples, {100 * idle / n:.1f}% waiting in the selector")
    busy = [(s, c) for s, c in mine if not (s and any(s[-1].startswith(p) for p in IDLE_LEAVES))]
    nb = sum(c for _s, c in busy) or 1
    buckets: Counter[str] = Counter()
    for stack, count in busy:
        joined = ";".join(stack)
        for label, needle in BUCKETS:
            if needle in joined:
                buckets[label] += count
                break
        else:
            buckets["other"] += count
    out.append(f"  busy samples by first matching area (of {nb} busy):")
    for label, count in buckets.most_common():
        out.append(f"    {label:34} {100 * count / nb:5.1f}%")
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for stack, count in busy:
        seen = set()
        for frame in stack:
            key = _short(frame)
            if key not in seen:
                inclusive[key] += count
                seen.add(key)
        if stack:
            leaves[_short(stack[-1])] += count
    out.append(f"  inclusive (top {top}, % of busy):")
    shown = [
        (k, c)
        for k, c in inclusive.most_common()
        if not re.search(r"runpy|asyncio/|cli\.py|web\.py\)", k)
    ]
    for key, count in shown[:top]:
        out.append(f"    {100 * count / nb:5.1f}%  {key}")
    out.append(f"  leaf functions (top {top}, % of busy):")
    for key, count in leaves.most_common(top):
        out.append(f"    {100 * count / nb:5.1f}%  {key}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default="MainThread")
    args = parser.parse_args()
    for path in args.files:
        print(report(path, args.top, args.thread))
        print()


if __name__ == "__main__":
    main()
