"""Serving the demo: the three regions and the development identity provider in this process,
the demo cases made once they are all up, then the banner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from node.app import create_app
from node.appkeys import CATALOG_REFRESHER
from node.config import NodeConfig
from node.demo.banner import banner
from node.demo.people import demo_people
from node.demo.regions import PROVIDER_OFFSET, client_id, prepare, provider_url
from node.demo.seeding import Say, print_line, seed
from node.identity.devprovider import DevProvider, RunningProvider, serve


@dataclass
class Demo:
    """The three regions running in this process."""

    base: Path
    configs: list[NodeConfig]
    runners: list[web.AppRunner]
    cases: dict[str, dict[str, Any]]
    #: The development identity provider the regions trust (全程网办 logins).
    provider: RunningProvider | None = None

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners = []
        if self.provider is not None:
            await self.provider.stop()
            self.provider = None


async def start_provider(base_port: int, configs: list[NodeConfig]) -> RunningProvider:
    """The demo's DEVELOPMENT identity provider on loopback, trusted by every region (keys made
    now, kept in memory only)."""
    provider = DevProvider(issuer=provider_url(base_port), people=demo_people())
    for config in configs:
        provider.register(client_id(config.region), config.url + "/citizen/callback")
    return await serve(provider, "127.0.0.1", base_port + PROVIDER_OFFSET)


async def start(base: Path, base_port: int, *, say: Say = print_line) -> Demo:
    """Make (once) and serve the three regions, make the demo cases (once), print the table."""
    base = base.resolve()
    configs = await prepare(base, base_port)
    runners: list[web.AppRunner] = []
    provider = await start_provider(base_port, configs)
    try:
        for config in configs:
            runner = web.AppRunner(create_app(config), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, config.host, config.port).start()
            runners.append(runner)
        # All three are up now: fetch each other's catalogues without waiting for the retry.
        for runner in runners:
            await runner.app[CATALOG_REFRESHER].refresh_now()
        apps = {c.region: r.app for c, r in zip(configs, runners, strict=True)}
        cases = await seed(base, configs, apps, say, provider.provider)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        await provider.stop()
        raise
    demo = Demo(base, configs, runners, cases, provider)
    for line in banner(configs, cases, provider.provider):
        say(line)
    return demo
