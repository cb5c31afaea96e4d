"""Regions with their sample catalogue and staff, running in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.accounts.service import create_user
from node.catalog.loading import load_catalog_file
from node.catalog.partner_cache import refresh_partner_catalog
from node.config import NodeConfig
from node.storage.database import Database
from tests.support.api import PASSWORD, ApiClient, pdf
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs

SAMPLES = Path(__file__).resolve().parents[2] / "node" / "catalog" / "samples"
STAFF = {
    "clerk": "王芳",
    "approver": "李明",
    "inspector": "赵强",
    "supervisor": "陈静",
    "admin": "管理员",
    "helper": "孙丽",
}


async def provision(config: NodeConfig) -> None:
    db = Database(config.database_url)
    try:
        await load_catalog_file(db, config.region, SAMPLES / f"{config.region}.toml")
        for username, name in STAFF.items():
            await create_user(db, username, PASSWORD, username, name)
    finally:
        await db.dispose()


async def start_regions(
    tmp: Path, databases: DatabaseFactory, regions: list[tuple[str, str]], *, extra_toml: str = ""
) -> list[RunningNode]:
    """Nodes partnered with each other, each with its catalogue, staff, and its partners'
    catalogues fetched (``extra_toml``: more of every node's tongban.toml)."""
    configs = await make_configs(tmp, databases, regions, extra_toml=extra_toml)
    for config in configs:
        await provision(config)
    nodes = [await RunningNode(c).start() for c in configs]
    await fetch_partner_catalogues(nodes)
    return nodes


async def fetch_partner_catalogues(nodes: list[RunningNode]) -> None:
    """Each node fetches the catalogue of every other (they partner each other)."""
    for node in nodes:
        for other in nodes:
            if other is not node:
                await refresh_partner_catalog(
                    node.db, node.fed.trust, node.fed.client, other.config.region
                )


async def materials_for(
    client: ApiClient, item: dict[str, Any], *, public: bool = False
) -> list[dict[str, Any]]:
    """Materials for an application to ``item`` (its 一次告知 view): 容缺 where allowed, 告知承诺
    where allowed, and an uploaded scan for every other required material."""
    materials = []
    for material in item["materials"]:
        if material.get("deferrable"):
            materials.append({"code": material["code"], "status": "deferred", "blob": None})
        elif material.get("pledgeable"):
            materials.append({"code": material["code"], "status": "pledged", "blob": None})
        elif material["required"]:
            upload = await client.upload(
                pdf(material["name"]), f"{material['code']}.pdf", public=public
            )
            materials.append(
                {"code": material["code"], "status": "provided", "blob": upload["sha256"]}
            )
    return materials
