"""Partner regions made up at run time, for tests and benches (bench/ imports this too): fresh
keys, unreachable partners, and a partners file padded with them to national size."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from node.federation.partners import Partner, load_partners, render_partners
from protocol.keys import TrustedKey, generate_private_key, key_id, utc
from tests.support.nodes import free_port

DAY = 24 * 3600


def fresh_key(region: str, *, now: float) -> TrustedKey:
    """A new Ed25519 key of ``region``, valid from a day before ``now`` for a year after."""
    public = generate_private_key().public_key()
    return TrustedKey(
        kid=key_id(region, public),
        region=region,
        public_key=public,
        not_before=utc(now - DAY),
        not_after=utc(now + 365 * DAY),
    )


def unreachable_partners(
    count: int,
    *,
    port: Callable[[], int] = free_port,
    url: Callable[[int], str] | None = None,
) -> list[Partner]:
    """``count`` partner regions (110000, 110001, …) with fresh keys whose URLs are local
    ports nothing listens on (each from ``port()``), or ``url(i)`` when given."""
    now = time.time()
    out = []
    for i in range(count):
        region = f"{110000 + i:06d}"
        out.append(
            Partner(
                region=region,
                name=f"不可达{i}",
                url=url(i) if url is not None else f"http://127.0.0.1:{port()}",
                keys=(fresh_key(region, now=now),),
            )
        )
    return out


def pad_partners_file(
    file: Path,
    total: int,
    *,
    port: Callable[[], int] = free_port,
    url: Callable[[int], str] | None = None,
) -> dict[str, Partner]:
    """Add unreachable partners to the partners file ``file`` until it lists ``total``; returns
    every partner it lists then."""
    listed = load_partners(file)
    padding = unreachable_partners(total - len(listed), port=port, url=url)
    listed.update({p.region: p for p in padding})
    file.write_text(render_partners(list(listed.values())), encoding="utf-8")
    return listed
