"""A node with 视频办 settings of the test's choosing (opening hours, limits)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from node.clock import CHINA
from node.config import NodeConfig
from node.videocalls import service
from node.videocalls.settings import DAYS
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs
from tests.support.regions import provision

ALWAYS = 'hours = ["mon-sun 00:00-24:00"]'


def not_today() -> str:
    """Opening hours on every day but today (China): the hall is closed now."""
    today = datetime.now(CHINA).weekday()
    return (
        "hours = ["
        + ", ".join(f'"{d} 00:00-24:00"' for i, d in enumerate(DAYS) if i != today)
        + "]"
    )


async def video_node(
    tmp: Path, databases: DatabaseFactory, settings: str, *, region: str = "370500"
) -> RunningNode:
    [config] = await make_configs(tmp, databases, [(region, "东营市")], link=False)
    toml = config.dir / "tongban.toml"
    extra = f'\n[videocalls]\n{settings}\n\n[http]\ntrusted_proxies = ["127.0.0.1"]\n'
    toml.write_text(toml.read_text(encoding="utf-8") + extra, encoding="utf-8")
    config = NodeConfig.load(config.dir)
    await provision(config)
    return await RunningNode(config).start()


async def answered_call(node: RunningNode, helper: str = "helper") -> str:
    """A 视频办 call the helper answered and ended (written through the service, whatever the
    opening hours): its console page shows the call as over."""
    call_id, _key = await service.create_call(
        node.db, node.fed.sealer, service.Request(None, "咨询企业开办", None, False)
    )
    now = time.time()
    await service.set_status(
        node.db,
        call_id,
        frm=("waiting",),
        status="ended",
        picked_at=now,
        ended_at=now,
        end_reason="done",
        clerk=helper,
        clerk_name="孙丽",
    )
    return call_id
