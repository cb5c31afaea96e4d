"""Making the demo cases not made before, while the nodes run, and keeping the list of those
made in ``DIR/demo-cases.json`` (with their query codes: demo data only), so a second start
adds none."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from node.config import NodeConfig
from node.demo.client import DemoError, Seeder
from node.demo.stories import BACKDATED, ORDER, STORIES, Story
from node.identity.devprovider import DevProvider

SEED_FILE = "demo-cases.json"
#: Stories made at the same time (each waits on messages between the nodes most of its time).
STORIES_AT_ONCE = 5

Say = Callable[[str], None]


def print_line(line: str) -> None:
    print(line, flush=True)


def load_seeded(base: Path) -> dict[str, dict[str, Any]]:
    path = base / SEED_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {entry["key"]: entry for entry in data.get("cases", [])}


def _save_seeded(base: Path, seeded: dict[str, dict[str, Any]]) -> None:
    path = base / SEED_FILE
    text = json.dumps(
        {"cases": list(seeded.values())}, ensure_ascii=False, indent=2, sort_keys=True
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


async def seed(
    base: Path,
    configs: list[NodeConfig],
    apps: dict[str, web.Application],
    say: Say = print_line,
    identity: DevProvider | None = None,
) -> dict[str, dict[str, Any]]:
    """Make every demo case not made before; returns all of them by story key."""
    seeded = load_seeded(base)
    todo = [story for story in STORIES if story.key not in seeded]
    if not todo:
        return seeded
    say(f"正在生成演示办件（{len(todo)} 件，经由三个节点真实流转）…")
    urls = {c.region: c.url for c in configs}
    async with aiohttp.ClientSession() as http:
        seeder = Seeder(http, urls, apps, identity)
        # Logins first (one argon2 check each), so the stories share the tokens.
        for region in urls:
            for user in ("clerk", "approver", "inspector", "supervisor"):
                await seeder.token(region, user)
        gate = asyncio.Semaphore(STORIES_AT_ONCE)

        async def run(story: Story) -> None:
            try:
                async with gate:
                    entry = await story.run(seeder)
            except (DemoError, aiohttp.ClientError, TimeoutError) as exc:
                # The regions still serve; the next start tries this story again.
                say(f"演示办件「{story.title}」未能生成：{exc}")
                return
            entry.update(key=story.key, title=story.title)
            seeded[story.key] = entry
            _save_seeded(base, seeded)

        # The backdated cases alone (their node's clock is shifted meanwhile), then the others.
        alone = [story for story in todo if story.key in BACKDATED]
        for story in alone:
            await run(story)
        await asyncio.gather(*(run(story) for story in todo if story not in alone))
    return dict(sorted(seeded.items(), key=lambda kv: ORDER.get(kv[0], 99)))
