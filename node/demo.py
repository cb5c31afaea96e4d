"""`tongban demo`: three partnered regions on one machine (DESIGN §6)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from node.config import CONFIG_FILE, NodeConfig
from node.logging_setup import configure_logging
from node.provisioning import init_node, link_all

#: (region, name, port offset) of the demo regions.
DEMO_REGIONS = (
    ("430400", "衡阳市", 0),
    ("430523", "邵阳县", 1),
    ("370500", "东营市", 2),
)
DEMO_PASSWORD = "tongban-demo"
DEMO_USERS = ("clerk", "approver", "inspector", "supervisor", "admin")


async def prepare(base: Path, base_port: int) -> list[NodeConfig]:
    """Create the three regions under ``base`` (once) and partner them with each other."""
    configs = []
    created = False
    for region, name, offset in DEMO_REGIONS:
        directory = base / region
        if (directory / CONFIG_FILE).exists():
            configs.append(NodeConfig.load(directory))
            continue
        configs.append(
            await init_node(directory, region=region, name=name, port=base_port + offset)
        )
        created = True
    if created:
        await link_all(configs)
        for config in configs:
            await _provision(config)
    return configs


async def _provision(config: NodeConfig) -> None:
    """The sample catalogue and the demo users of one region."""
    from node.accounts.service import create_user
    from node.catalog.service import SAMPLES_DIR, load_catalog_file
    from node.storage.database import Database

    db = Database(config.database_url)
    try:
        await load_catalog_file(db, config.region, SAMPLES_DIR / f"{config.region}.toml")
        for username in DEMO_USERS:
            await create_user(db, username, DEMO_PASSWORD, username, None)
    finally:
        await db.dispose()


async def serve(configs: list[NodeConfig]) -> None:
    from node.app import create_app

    runners = []
    try:
        for config in configs:
            runner = web.AppRunner(create_app(config), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, config.host, config.port).start()
            runners.append(runner)
        # All three are up now: fetch each other's catalogues without waiting for the retry.
        from node.catalog.service import CATALOG_REFRESHER

        for runner in runners:
            await runner.app[CATALOG_REFRESHER].refresh_now()
        _print_banner(configs)
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def _print_banner(configs: list[NodeConfig]) -> None:
    print("通办 Tongban demo — 三个地区已启动 (three regions running):", flush=True)
    for config in configs:
        print(f"  {config.name} {config.region}: {config.url}/", flush=True)
        print(f"      节点描述 descriptor: {config.url}/.well-known/tongban/node", flush=True)
        print(f"      指标 metrics: {config.url}/metrics", flush=True)
    print(f"登录 logins: {', '.join(DEMO_USERS)} / 密码 {DEMO_PASSWORD}", flush=True)
    print("员工接口 staff API: POST /api/v1/login", flush=True)
    print("事项目录 catalogue: GET /api/v1/catalog", flush=True)
    print("(web pages and sample cases arrive with the pages issue)", flush=True)
    print("Ctrl-C 退出 to stop.", flush=True)


def run_demo(base: Path, base_port: int) -> int:
    configure_logging()

    async def main() -> None:
        configs = await prepare(base, base_port)
        await serve(configs)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
