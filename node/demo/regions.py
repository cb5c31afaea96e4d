"""The three demo regions on disk: made once under the demo's folder, partnered with each other,
each with the demo catalogue (``node/demo_catalog/<region>.toml``), its service hall and the demo
staff (password ``tongban-demo``), and trusting the demo's development identity provider."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from node.accounts.service import UserExists, create_user, list_users
from node.catalog.loading import load_catalog_file
from node.config import CONFIG_FILE, NodeConfig
from node.provisioning import init_node, link_all
from node.storage.database import Database

#: (region, name, port offset) of the demo regions.
DEMO_REGIONS = (
    ("430400", "衡阳市", 0),
    ("430523", "邵阳县", 1),
    ("370500", "东营市", 2),
)
DEMO_PASSWORD = "tongban-demo"
#: The development identity provider (统一身份认证 stand-in) listens at base port + this.
PROVIDER_OFFSET = 3
DEMO_USERS = ("clerk", "approver", "inspector", "supervisor", "admin", "helper")
#: Display names of the demo staff, per region (the login names are the same everywhere).
DEMO_NAMES = {
    "430400": {
        "clerk": "王芳",
        "approver": "李明",
        "inspector": "赵强",
        "supervisor": "陈静",
        "admin": "周磊",
        "helper": "黄敏",
    },
    "430523": {
        "clerk": "刘娟",
        "approver": "罗建军",
        "inspector": "曾志勇",
        "supervisor": "唐丽",
        "admin": "邓超",
        "helper": "谢芳",
    },
    "370500": {
        "clerk": "孙婷",
        "approver": "张海涛",
        "inspector": "徐万栋",
        "supervisor": "杨柳",
        "admin": "于洋",
        "helper": "孔亮",
    },
}
#: Each region's service hall, shown on its 办事指南 (``[hall]`` in tongban.toml).
DEMO_HALLS = {
    "430400": (
        "衡阳市政务服务中心",
        "二楼 跨域通办专窗（21-23 号窗口）",
        "湖南省衡阳市蒸湘区船山大道11号 衡阳市政务服务中心",
        "周一至周五 9:00-12:00，13:30-17:00；周六 9:00-12:00（法定节假日除外）",
        "0734-8868000",
    ),
    "430523": (
        "邵阳县政务服务中心",
        "一楼 跨域通办专窗（8 号窗口）",
        "湖南省邵阳县塘渡口镇政务服务中心一楼",
        "周一至周五 8:30-12:00，14:30-17:30（法定节假日除外）",
        "0739-6866001",
    ),
    "370500": (
        "东营市民服务中心",
        "三楼 跨省通办窗口（C301）",
        "山东省东营市东营区府前大街59号 东营市民服务中心",
        "周一至周五 9:00-12:00，13:00-17:00（法定节假日除外）",
        "0546-8306000",
    ),
}
CATALOG_DIR = Path(__file__).parents[1] / "demo_catalog"


def provider_url(base_port: int) -> str:
    return f"http://127.0.0.1:{base_port + PROVIDER_OFFSET}"


def client_id(region: str) -> str:
    return f"tongban-{region}"


def identity_toml(base_port: int, region: str) -> str:
    """The ``[identity]`` of a demo region: trust the demo's development provider."""
    return (
        "\n# The demo's DEVELOPMENT identity provider (node/identity/devprovider.py): never\n"
        "# use it for a real node; point issuer at the province's 统一身份认证 instead.\n"
        f'[identity]\nissuer = "{provider_url(base_port)}"\nclient_id = "{client_id(region)}"\n'
    )


async def prepare(base: Path, base_port: int) -> list[NodeConfig]:
    """Create the three regions under ``base`` (once), partner them with each other, and load
    the demo catalogue and staff (idempotent: a second start changes nothing). A region made
    by an older demo, without ``[identity]``, is given one."""
    configs = []
    created = False
    for region, name, offset in DEMO_REGIONS:
        directory = base / region
        if (directory / CONFIG_FILE).exists():
            config = NodeConfig.load(directory)
            if not config.identity.configured:
                with (directory / CONFIG_FILE).open("a", encoding="utf-8") as toml:
                    toml.write(identity_toml(base_port, region))
                config = NodeConfig.load(directory)
            configs.append(config)
            continue
        configs.append(
            await init_node(
                directory,
                region=region,
                name=name,
                port=base_port + offset,
                extra_toml=_hall_toml(region) + identity_toml(base_port, region),
            )
        )
        created = True
    if created:
        await link_all(configs)
    await asyncio.gather(*(_provision(config) for config in configs))
    return configs


def _hall_toml(region: str) -> str:
    keys = ("name", "window", "address", "hours", "phone")
    values = DEMO_HALLS.get(region)
    if values is None:
        return ""
    return "\n".join(
        [
            "[hall]",
            *(
                f"{k} = {json.dumps(v, ensure_ascii=False)}"
                for k, v in zip(keys, values, strict=True)
            ),
        ]
    )


async def _provision(config: NodeConfig) -> None:
    """The demo catalogue and the demo staff of one region."""
    db = Database(config.database_url)
    try:
        await load_catalog_file(db, config.region, CATALOG_DIR / f"{config.region}.toml")
        names = DEMO_NAMES.get(config.region, {})
        existing = {user.username for user in await list_users(db)}
        for username in DEMO_USERS:
            if username in existing:
                continue
            with contextlib.suppress(UserExists):
                await create_user(db, username, DEMO_PASSWORD, username, names.get(username))
    finally:
        await db.dispose()
