"""Nodes for the 办事指南 tests: partnered regions with their sample catalogues, some with the
``[hall]`` settings of their service hall."""

from __future__ import annotations

from pathlib import Path

from node.catalog.partner_cache import refresh_partner_catalog
from node.config import CONFIG_FILE, NodeConfig
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs
from tests.support.regions import provision

HALL = """
[hall]
name = "邵阳县政务服务中心"
window = "一楼 跨域通办专窗（8 号窗口）"
address = "邵阳县塘渡口镇政务服务中心一楼"
hours = "周一至周五 8:30-12:00，14:30-17:30（法定节假日除外）"
phone = "0739-6866001"
"""


async def start_with_hall(
    tmp: Path, databases: DatabaseFactory, regions: list[tuple[str, str]], hall: dict[str, str]
) -> list[RunningNode]:
    """Partnered nodes with their sample catalogues; the regions in ``hall`` get that
    ``[hall]`` section in tongban.toml. Each has fetched the others' catalogues."""
    configs = await make_configs(tmp, databases, regions)
    loaded = []
    for config in configs:
        if config.region in hall:
            path = config.dir / CONFIG_FILE
            path.write_text(path.read_text(encoding="utf-8") + hall[config.region], "utf-8")
            config = NodeConfig.load(config.dir)
        await provision(config)
        loaded.append(config)
    nodes = [await RunningNode(c).start() for c in loaded]
    for node in nodes:
        for other in nodes:
            if other is not node:
                await refresh(node, other)
    return nodes


async def refresh(node: RunningNode, other: RunningNode) -> None:
    await refresh_partner_catalog(node.db, node.fed.trust, node.fed.client, other.config.region)
