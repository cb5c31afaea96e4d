"""`tongban doctor`: key mode, database, partners reachable with clock skew, plain HTTP
refused, own URL scheme, holiday calendar coverage for the coming year."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from node.cli import main as cli
from node.config import NodeConfig
from node.doctor import Check, _skew, run_checks
from node.provisioning import add_partner, self_entry
from node.storage.database import Database
from node.workdays.service import load_calendar
from protocol.claims import CLOCK_SKEW
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, make_configs


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    nodes = [await RunningNode(c).start() for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_healthy_pair_passes(pair: list[RunningNode]) -> None:
    shaoyang, _hengyang = pair
    checks = by_name(await run_checks(shaoyang.config))
    assert checks["key"].level == "ok"
    assert checks["database"].level == "ok"
    assert checks["identity"].level == "ok"
    partner = checks["partner 430400 衡阳市"]
    assert partner.level == "ok" and "时钟偏差" in partner.message
    assert checks["tls"].level == "warn"  # loopback HTTP: fine for tests and the demo only


async def test_unreachable_and_plain_http_partners_fail(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    shaoyang, hengyang = pair
    entry = await self_entry(hengyang.config)
    await hengyang.stop()
    checks = by_name(await run_checks(shaoyang.config))
    assert checks["partner 430400 衡阳市"].level == "fail"
    assert "unreachable" in checks["partner 430400 衡阳市"].message

    moved = type(entry)(region=entry.region, name=entry.name, url="http://10.20.0.4:8400", keys=())
    add_partner(shaoyang.config, moved)
    check = by_name(await run_checks(shaoyang.config))["partner 430400 衡阳市"]
    assert check.level == "fail" and check.message.startswith("plain_http_refused")
    assert await asyncio.to_thread(cli, ["doctor", "--dir", str(shaoyang.config.dir)]) == 1


async def test_key_with_loose_mode_and_public_http_url_fail(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    [config] = await make_configs(tmp_path, databases, [("430400", "衡阳市")], link=False)
    config.key_file.chmod(0o644)
    toml = config.dir / "tongban.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace(config.url, "http://tongban.hengyang.example"),
        encoding="utf-8",
    )
    checks = await run_checks(NodeConfig.load(config.dir))
    named = by_name(checks)
    assert named["key"].level == "fail" and "chmod 600" in named["key"].message
    tls = [c for c in checks if c.name == "tls"]
    assert tls[0].level == "fail" and tls[0].message.startswith("plain_http_refused")
    assert named["partners"].level == "warn"  # none yet


def http_date(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def test_clock_skew_is_judged_against_the_envelope_tolerance() -> None:
    assert _skew("p", http_date(0)).level == "ok"
    assert _skew("p", http_date(CLOCK_SKEW * 0.75)).level == "warn"
    assert _skew("p", http_date(-CLOCK_SKEW * 0.75)).level == "warn"
    late = _skew("p", http_date(-(CLOCK_SKEW + 120)))
    assert late.level == "fail" and "NTP" in late.message
    assert _skew("p", None).level == "warn"
    assert _skew("p", "not a date").level == "warn"


async def test_calendar_must_cover_the_coming_year(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    [config] = await make_configs(tmp_path, databases, [("430400", "衡阳市")], link=False)
    db = Database(config.database_url)
    try:
        years = (await load_calendar(db)).years
    finally:
        await db.dispose()
    last = max(years)
    assert last - 1 in years, years  # the packaged calendar holds consecutive years
    covered = by_name(await run_checks(config, today=date(last - 1, 3, 1)))["calendar"]
    assert covered.level == "ok"
    # In November of the last loaded year, the coming twelve months run into the next one.
    missing = by_name(await run_checks(config, today=date(last, 11, 27)))["calendar"]
    assert missing.level == "warn" and str(last + 1) in missing.message
    assert "tongban calendar load" in missing.message
