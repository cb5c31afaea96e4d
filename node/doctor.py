"""`tongban doctor`: checks an operator runs before and after changes.

Each check prints a line with ok / warn / fail and what to do. Exit status 1 if any failed.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import stat
import time
from dataclasses import dataclass
from datetime import date

import aiohttp
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from node.config import NodeConfig, is_loopback_url
from node.federation.identity import NodeIdentity
from node.federation.trust import TrustStore
from node.storage.database import Database
from node.storage.migrate import alembic_config
from protocol.claims import CLOCK_SKEW
from protocol.descriptor import verify_descriptor


@dataclass(frozen=True)
class Check:
    level: str  # "ok" | "warn" | "fail"
    name: str
    message: str


async def run_checks(config: NodeConfig) -> list[Check]:
    checks: list[Check] = []
    mode = stat.S_IMODE(os.stat(config.key_file).st_mode) if config.key_file.exists() else None
    if mode is None:
        checks.append(Check("fail", "key", f"{config.key_file} 不存在 missing"))
    elif mode & 0o077:
        checks.append(Check("fail", "key", f"node.key 权限过宽 mode {oct(mode)}: chmod 600"))
    else:
        checks.append(Check("ok", "key", "node.key 0600"))
    db = Database(config.database_url)
    try:
        try:
            async with db.read() as conn:
                current = await conn.run_sync(
                    lambda c: set(MigrationContext.configure(c).get_current_heads())
                )
            heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
            if current == heads:
                checks.append(Check("ok", "database", "数据库可用，结构为最新 schema up to date"))
            else:
                checks.append(Check("warn", "database", "数据库结构待升级：启动节点即自动迁移"))
        except Exception as exc:
            checks.append(Check("fail", "database", f"无法连接数据库 cannot connect: {exc}"))
            return checks
        identity = await NodeIdentity.load(config, db)
        checks.append(Check("ok", "identity", f"签名密钥 {identity.kid}"))
        trust = TrustStore(db, config.partners_file)
        await trust.load()
        checks.extend(await _partners(config, trust))
        checks.append(await _calendar(db))
    finally:
        await db.dispose()
    return checks


async def _partners(config: NodeConfig, trust: TrustStore) -> list[Check]:
    if not trust.partners:
        return [Check("warn", "partners", "partners.toml 中没有伙伴 no partners yet")]
    out = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for partner in trust.partners.values():
            name = f"partner {partner.region} {partner.name}"
            plain = partner.url.startswith("http://") and not is_loopback_url(partner.url)
            if plain and not config.federation.allow_plain_http:
                out.append(Check("fail", name, "非本机地址须使用 HTTPS (plain HTTP refused)"))
                continue
            try:
                async with session.get(f"{partner.url}/.well-known/tongban/node") as resp:
                    body = await resp.read()
                    server_date = resp.headers.get("Date")
                verify_descriptor(body, trust.keys, region=partner.region, now=time.time())
            except Exception as exc:
                out.append(Check("fail", name, f"不可达或描述无效 unreachable/invalid: {exc}"))
                continue
            skew = None
            if server_date:
                parsed = email.utils.parsedate_to_datetime(server_date)
                skew = abs(parsed.timestamp() - time.time())
            if skew is not None and skew > CLOCK_SKEW / 2:
                out.append(Check("warn", name, f"时钟偏差 clock skew {skew:.0f} s"))
            else:
                out.append(Check("ok", name, "可达，描述签名有效 reachable, descriptor verifies"))
    return out


async def _calendar(db: Database) -> Check:
    from node.workdays.service import load_calendar

    calendar = await load_calendar(db)
    today = date.today()
    if calendar.missing_next_year(today):
        return Check(
            "warn",
            "calendar",
            f"未载入 {today.year + 1} 年节假日安排：超出部分的期限按周末临时计算；"
            "国务院办公厅通知发布后请执行 tongban calendar load",
        )
    return Check("ok", "calendar", f"节假日数据覆盖 {today.year + 1} 年")


def main(config: NodeConfig) -> int:
    checks = asyncio.run(run_checks(config))
    for check in checks:
        print(f"[{check.level:>4}] {check.name}: {check.message}")
    return 1 if any(c.level == "fail" for c in checks) else 0
