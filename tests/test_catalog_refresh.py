"""Refreshing partners' catalogues at national size: the ETag and 304 of the catalogue endpoint,
conditional fetches, the refresh plan (start slots, jitter, per-partner backoff) and the
refresher's bounded concurrency, against real nodes and real sockets."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from sqlalchemy import event, select

from node.catalog import refresher as refresher_module
from node.catalog.loading import SAMPLES_DIR, load_catalog_file
from node.catalog.models import partner_catalogs
from node.catalog.partner_cache import record_failures, refresh_partner_catalog
from node.catalog.publishing import TOKEN_REUSE, catalog_etag, etag_matches, our_catalog
from node.catalog.refresher import CatalogRefresher
from node.catalog.schedule import RefreshSchedule
from node.federation.client import TransportError
from node.federation.trust import TrustStore
from node.storage.database import Database
from node.storage.migrate import upgrade
from protocol.catalog import verify_catalog
from protocol.keys import generate_private_key
from tests.support.databases import DatabaseFactory
from tests.support.nodes import RunningNode, free_port, make_configs
from tests.support.waiting import wait_until

NOW = 1_795_000_000.0


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    nodes = [RunningNode(c) for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


async def cached_row(db: Database, region: str):  # type: ignore[no-untyped-def]
    async with db.read() as conn:
        return (
            await conn.execute(select(partner_catalogs).where(partner_catalogs.c.region == region))
        ).first()


async def get(
    url: str, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


# -- serving: ETag and 304 -----------------------------------------------------------------


async def test_catalogue_endpoint_answers_304_to_its_etag(pair: list[RunningNode]) -> None:
    _shaoyang, hengyang = [await n.start() for n in pair]
    url = f"{hengyang.url}/federation/v1/catalog"
    await load_catalog_file(hengyang.db, "430400", SAMPLES_DIR / "430400.toml")
    status, headers, body = await get(url)
    etag = headers["ETag"]
    assert status == 200 and body and etag.startswith('"') and etag.endswith('"')
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, headers, body = await get(url, {"If-None-Match": sent})
        assert (status, body, headers["ETag"]) == (304, b"", etag), sent
    for sent in ('"other"', etag[:-2] + '"', ""):
        status, _headers, body = await get(url, {"If-None-Match": sent})
        assert status == 200 and body, sent
    # A changed catalogue has another ETag: the old one gets the whole catalogue.
    path = hengyang.config.dir / "catalog.toml"
    text = (SAMPLES_DIR / "430400.toml").read_text(encoding="utf-8")
    path.write_text(text.replace("公共场所卫生许可（新办）", "公共场所卫生许可（新设）"), "utf-8")
    await load_catalog_file(hengyang.db, "430400", path)
    status, headers, body = await get(url, {"If-None-Match": etag})
    assert status == 200 and body and headers["ETag"] != etag


async def test_etag_follows_the_items_and_key_not_the_signing_time(
    databases: DatabaseFactory,
) -> None:
    db = Database(await databases.new_url("etag"))
    await upgrade(db)
    try:
        await load_catalog_file(db, "430400", SAMPLES_DIR / "430400.toml")
        identity = SimpleNamespace(
            region="430400", kid="430400:etag", private_key=generate_private_key()
        )
        first = await our_catalog(db, identity, NOW)  # type: ignore[arg-type]
        later = await our_catalog(db, identity, NOW + TOKEN_REUSE + 1)  # type: ignore[arg-type]
        assert later.token != first.token and later.etag == first.etag
        other_key = SimpleNamespace(
            region="430400", kid="430400:other", private_key=generate_private_key()
        )
        assert (await our_catalog(db, other_key, NOW)).etag != first.etag  # type: ignore[arg-type]
        assert catalog_etag([], "k") != catalog_etag([], "j")
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("", False),
        ('"a"', True),
        ('W/"a"', True),
        ('"b", "a"', True),
        ("*", True),
        ('"b"', False),
        ("a", False),
    ],
)
def test_if_none_match_parsing(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"a"') is matches


# -- fetching: conditional requests --------------------------------------------------------


async def test_304_keeps_the_cache_and_records_the_check(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES_DIR / "430400.toml")
    fed = shaoyang.fed
    now = time.time()
    codes = await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400", now=now)
    stored = await cached_row(shaoyang.db, "430400")
    assert stored.etag and stored.checked_at == stored.fetched_at == now
    again = await refresh_partner_catalog(
        shaoyang.db, fed.trust, fed.client, "430400", now=now + 60
    )
    row = await cached_row(shaoyang.db, "430400")
    assert again == codes
    # Not modified: the same token and fetch time; only the check moved.
    assert (row.token, row.fetched_at, row.etag) == (stored.token, now, stored.etag)
    assert row.checked_at == row.attempted_at == now + 60 and row.error is None
    # A changed catalogue is fetched whole and stored with its new ETag.
    path = hengyang.config.dir / "catalog.toml"
    text = (SAMPLES_DIR / "430400.toml").read_text(encoding="utf-8")
    path.write_text(
        text[: text.index('code = "430400-DJ-0001"')].rsplit("[[items]]", 1)[0], "utf-8"
    )
    await load_catalog_file(hengyang.db, "430400", path)
    await asyncio.sleep(1.1)  # a newer iat
    changed = await refresh_partner_catalog(shaoyang.db, fed.trust, fed.client, "430400")
    row = await cached_row(shaoyang.db, "430400")
    assert len(changed) == 2 and row.etag != stored.etag and row.token != stored.token


async def test_304_without_our_etag_is_refused(pair: list[RunningNode]) -> None:
    """A partner answering 304 to a request that named no ETag has nothing we hold to keep."""
    shaoyang = await pair[0].start()

    async def not_modified(_request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"ETag": '"x"'})

    app = web.Application()
    app.router.add_get("/federation/v1/catalog", not_modified)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with pytest.raises(TransportError, match="HTTP 304"):
            await shaoyang.fed.client.get_catalog_if_changed(f"http://127.0.0.1:{port}", None)
        answer = await shaoyang.fed.client.get_catalog_if_changed(f"http://127.0.0.1:{port}", '"x"')
        assert answer.body is None
    finally:
        await runner.cleanup()


# -- the plan ------------------------------------------------------------------------------


def test_a_start_with_3000_partners_spreads_their_first_fetches() -> None:
    plan = RefreshSchedule(1800.0, 30.0, jitter=0.1, start_rate=20.0, rng=random.Random(1))
    regions = [f"{110000 + i}" for i in range(3000)]
    plan.admit(regions, NOW, {})
    assert len(plan.due(NOW)) == 1
    for second in range(1, 151):
        # At most start_rate more fall due in any one second.
        assert len(plan.due(NOW + second)) <= 20 * second + 1
    assert len(plan.due(NOW + 150)) == 3000
    # Partners added later queue behind the ones still waiting for their slot.
    plan.admit(["650000"], NOW + 1, {})
    assert plan.due_at("650000") == pytest.approx(NOW + 150)


def test_partners_checked_before_are_due_an_interval_after_their_check() -> None:
    plan = RefreshSchedule(1800.0, 30.0, jitter=0.1, rng=random.Random(2))
    checked = {f"{110000 + i}": NOW - 600.0 for i in range(1000)}
    checked["120000"] = NOW - 7200.0  # overdue: fetched in a start slot
    plan.admit([*checked, "130000"], NOW, checked)
    assert sorted(plan.due(NOW)) in (["120000"], ["130000"])
    assert len(plan.due(NOW + 1)) == 2
    dues = [plan.due_at(r) for r in checked if r != "120000"]
    assert all(NOW - 600 + 1620 <= at <= NOW - 600 + 1980 for at in dues if at is not None)
    assert len({round(at or 0) for at in dues}) > 100  # jittered, not all at one moment


def test_backoff_is_per_partner_and_capped() -> None:
    plan = RefreshSchedule(1800.0, 30.0, jitter=0.1, rng=random.Random(3))
    plan.admit(["430400", "370500"], NOW, {})
    delays = [plan.failed("430400", NOW) for _ in range(10)]
    for n, delay in enumerate(delays):
        base = min(1800.0, 30.0 * 2**n)
        assert 0.9 * base <= delay <= base
    assert plan.failures("430400") == 10 and plan.failures("370500") == 0
    after = plan.succeeded("370500", NOW)
    assert 1620 <= after <= 1980 and plan.due_at("370500") == NOW + after
    plan.succeeded("430400", NOW)
    assert plan.failures("430400") == 0
    with pytest.raises(ValueError):
        RefreshSchedule(1.0, 1.0, jitter=1.0)


def test_a_partner_that_never_answered_backs_off_from_longer() -> None:
    plan = RefreshSchedule(1800.0, 30.0, jitter=0.0, retry_unanswered=300.0)
    plan.admit(["110000", "120000", "130000"], NOW, {"120000": NOW - 60.0})
    assert plan.failed("110000", NOW) == 300.0  # never answered
    assert plan.failed("110000", NOW) == 600.0
    assert plan.failed("120000", NOW) == 30.0  # checked before this run
    plan.succeeded("130000", NOW)
    assert plan.failed("130000", NOW) == 30.0  # answered in this run
    plan.forget("120000")
    plan.admit(["120000"], NOW, {})
    assert plan.failed("120000", NOW) == 300.0  # a partner removed and added again: new


def test_a_partner_down_before_a_restart_is_not_tried_again_at_once() -> None:
    plan = RefreshSchedule(1800.0, 30.0, jitter=0.1, retry_unanswered=300.0)
    failed = {"110000": NOW - 60.0, "120000": NOW - 600.0, "130000": NOW - 60.0}
    plan.admit(["110000", "120000", "130000"], NOW, {"130000": NOW - 120.0}, failed)
    # Its first retry was due 270-300 s after that failure: still to come.
    assert NOW - 60 + 270 <= (plan.due_at("110000") or 0) <= NOW - 60 + 300
    assert plan.failed("110000", NOW + 300) >= 540  # the second failure in a row
    assert plan.due_at("120000") == NOW  # that retry is past: a start slot
    # Checked since: planned from the check, as any checked partner.
    assert NOW - 120 + 1620 <= (plan.due_at("130000") or 0) <= NOW - 120 + 1980


def test_first_due_follows_every_change_of_the_plan() -> None:
    """The refresher asks only for the first due partner and the next due time (a heap, not a
    pass over every partner): plans moved before they fall due must not come back."""
    plan = RefreshSchedule(1800.0, 30.0, jitter=0.0, start_rate=1.0, rng=random.Random(4))
    plan.admit(["110000", "120000", "130000"], NOW, {})
    order = [plan.first_due(NOW + 5)]
    assert plan.first_due(NOW - 1) is None and plan.next_at() == NOW
    assert order[0] is not None
    plan.started(order[0])  # running: not due, and not counted as the next one
    assert plan.first_due(NOW) is None and plan.next_at() == NOW + 1
    second = plan.first_due(NOW + 5)
    assert second is not None and second != order[0]
    plan.succeeded(second, NOW + 1)  # moved half an hour away before it was fetched
    third = plan.first_due(NOW + 5)
    assert third is not None and third not in (*order, second)
    assert plan.due(NOW + 5) == [third]
    plan.soon(second, NOW + 3)  # on demand: first now, and its old time is gone
    assert plan.first_due(NOW + 5) == third  # overdue since NOW + 2, before NOW + 3
    plan.started(third)
    assert plan.first_due(NOW + 5) == second
    plan.started(second)
    assert plan.first_due(NOW + 1799) is None and plan.next_at() is None
    plan.failed(second, NOW + 10)
    assert plan.next_at() == plan.due_at(second) and 37 <= (plan.next_at() or 0) - NOW <= 40
    plan.forget(second)
    assert plan.next_at() is None and plan.first_due(math.inf) is None


def test_many_replans_leave_the_plan_exact() -> None:
    plan = RefreshSchedule(1800.0, 30.0, jitter=0.1, start_rate=50.0, rng=random.Random(5))
    regions = [f"{110000 + i}" for i in range(200)]
    plan.admit(regions, NOW, {})
    rng = random.Random(6)
    for step in range(5000):
        region = rng.choice(regions)
        if step % 3 == 0:
            plan.failed(region, NOW + step / 10)
        elif step % 3 == 1:
            plan.succeeded(region, NOW + step / 10)
        else:
            plan.soon(region, NOW + step / 10)
    # What first_due hands out, taken one by one, is due() in order.
    expected = plan.due(NOW + 3000)  # all of them, by due time
    taken = []
    while (first := plan.first_due(NOW + 3000)) is not None:
        taken.append(first)
        plan.started(first)
    assert taken == expected and len(taken) == 200
    assert plan.next_at() is None
    plan.failed("110007", NOW + 3000)
    plan.soon("110008", NOW + 3001)
    assert plan.next_at() == plan.due_at("110008") == NOW + 3001


# -- the refresher -------------------------------------------------------------------------


class CountingPartner:
    """A partner endpoint that notes when each catalogue request arrives and how many are in
    flight, and answers 503 after a short while."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def _catalog(self, _request: web.Request) -> web.Response:
        self.arrivals.append(time.time())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.1)
        finally:
            self.in_flight -= 1
        return web.Response(status=503, text="busy")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/federation/v1/catalog", self._catalog)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def partners_toml(entries: list[tuple[str, str, str]]) -> str:
    return "".join(
        f'[[partners]]\nregion = "{r}"\nname = "{n}"\nurl = "{u}"\n\n' for r, n, u in entries
    )


async def down_partners(
    db: Database, tmp_path: Path, count: int, *, first: int = 110000
) -> TrustStore:
    """A trust store of ``count`` partners (``first``, ``first`` + 1, …) that are down: one
    local port nothing listens on, so every fetch is refused at once."""
    closed = free_port()
    file = tmp_path / f"down-{first}.toml"
    file.write_text(
        partners_toml(
            [(f"{first + i}", f"地区{i}", f"http://127.0.0.1:{closed}") for i in range(count)]
        ),
        "utf-8",
    )
    trust = TrustStore(db, file)
    await trust.load()
    return trust


async def test_refresher_start_with_many_partners_is_spread_and_bounded(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    shaoyang = await pair[0].start()
    partner = CountingPartner()
    await partner.start()
    file = tmp_path / "many-partners.toml"
    url = f"http://127.0.0.1:{partner.port}"
    file.write_text(
        partners_toml([(f"{110000 + i}", f"地区{i}", url) for i in range(300)]), "utf-8"
    )
    trust = TrustStore(shaoyang.db, file)
    await trust.load()
    refresher = CatalogRefresher(
        shaoyang.db, trust, shaoyang.fed.client, start_rate=10.0, concurrency=3
    )
    started = time.time()
    refresher.start()
    try:
        await wait_until(lambda: _true(len(partner.arrivals) >= 12))
    finally:
        await refresher.stop()
        await partner.stop()
    # Never more than the slots allow: 1 at once, then 10 a second (a bound on what was due,
    # whatever the speed of this machine) and never more than 3 at a time.
    first_second = [t for t in partner.arrivals if t < started + 1.0]
    assert len(first_second) <= 11
    assert partner.most_in_flight <= 3
    # The ones that failed back off alone; the rest wait for their slot.
    failed = [r for r in refresher.schedule.regions() if refresher.schedule.failures(r)]
    assert failed and all((refresher.schedule.due_at(r) or 0) > started + 20 for r in failed)
    waiting = [r for r in refresher.schedule.regions() if not refresher.schedule.failures(r)]
    assert max(refresher.schedule.due_at(r) or 0 for r in waiting if r) >= started + 25


async def _true(value: bool) -> bool:
    return value


async def test_a_hanging_partner_does_not_delay_the_others(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    shaoyang, hengyang = [await n.start() for n in pair]
    await load_catalog_file(hengyang.db, "430400", SAMPLES_DIR / "430400.toml")
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    own_file = shaoyang.config.partners_file.read_text("utf-8")
    file = tmp_path / "with-hung.toml"
    file.write_text(
        own_file + "\n" + partners_toml([("370500", "东营市", f"http://127.0.0.1:{port}")]),
        "utf-8",
    )
    trust = TrustStore(shaoyang.db, file)
    await trust.load()
    refresher = CatalogRefresher(
        shaoyang.db, trust, shaoyang.fed.client, interval=0.5, jitter=0.0, start_rate=100.0
    )
    refresher.start()
    try:
        checks: set[float] = set()

        async def hengyang_checked_three_times() -> bool:
            row = await cached_row(shaoyang.db, "430400")
            if row is not None and row.checked_at is not None:
                checks.add(row.checked_at)
            return len(checks) >= 3

        await wait_until(hengyang_checked_three_times)
        # Meanwhile the hanging partner's one request is still waiting for an answer.
        assert hung and refresher.schedule.due_at("370500") == math.inf
        row = await cached_row(shaoyang.db, "430400")
        assert row.error is None and verify_catalog(
            row.token.encode(), trust.keys, "430400", time.time()
        )
    finally:
        await refresher.stop()
        server.close()
        for writer in hung:
            writer.close()


async def test_failed_background_fetches_are_noted_together(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    """With hundreds of partners down, each failure is noted in its row (when we tried, why),
    but in a few transactions, not one each; what is still waiting is noted at stop."""
    shaoyang = await pair[0].start()
    trust = await down_partners(shaoyang.db, tmp_path, 120)
    writes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO PARTNER_CATALOGS"):
            writes.append(statement)

    event.listen(shaoyang.db.engine.sync_engine, "before_cursor_execute", seen)
    refresher = CatalogRefresher(
        shaoyang.db, trust, shaoyang.fed.client, start_rate=1000.0, concurrency=8
    )
    refresher.start()
    try:

        async def all_noted() -> bool:
            async with shaoyang.db.read() as conn:
                noted = await conn.execute(
                    select(partner_catalogs.c.region).where(
                        partner_catalogs.c.region.between("110000", "110119"),
                        partner_catalogs.c.error.is_not(None),
                    )
                )
                return len(noted.all()) == 120

        await wait_until(all_noted, timeout=30)
    finally:
        await refresher.stop()
        event.remove(shaoyang.db.engine.sync_engine, "before_cursor_execute", seen)
    async with shaoyang.db.read() as conn:
        rows = (
            await conn.execute(
                select(partner_catalogs).where(
                    partner_catalogs.c.region.between("110000", "110119")
                )
            )
        ).all()
    assert all(r.attempted_at and r.token is None and r.items == "[]" for r in rows)
    assert all("Connect" in (r.error or "") for r in rows), rows[0].error
    # 120 failures (and retries) noted in a handful of transactions.
    assert 1 <= len(writes) <= 20, len(writes)


async def test_a_failure_waiting_to_be_noted_is_noted_at_stop(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    shaoyang = await pair[0].start()
    trust = await down_partners(shaoyang.db, tmp_path, 1)
    refresher = CatalogRefresher(shaoyang.db, trust, shaoyang.fed.client, start_rate=1000.0)
    refresher.start()
    await wait_until(lambda: _true(refresher.schedule.failures("110000") > 0))
    await refresher.stop()  # within FAILURES_FLUSH_AFTER of the failure
    row = await cached_row(shaoyang.db, "110000")
    assert row is not None and row.error and row.attempted_at


async def test_a_freed_slot_is_used_at_once(
    pair: list[RunningNode], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch that ends wakes the refresher after its slot is free: with one slot and the
    refresher's own timers an hour long, 30 partners that are down are still all tried."""
    monkeypatch.setattr(refresher_module, "PARTNER_CHECK_INTERVAL", 3600.0)
    monkeypatch.setattr(refresher_module, "FAILURES_FLUSH_AFTER", 3600.0)
    shaoyang = await pair[0].start()
    trust = await down_partners(shaoyang.db, tmp_path, 30)
    refresher = CatalogRefresher(
        shaoyang.db, trust, shaoyang.fed.client, start_rate=1000.0, concurrency=1
    )
    refresher.start()
    try:
        await wait_until(lambda: _true(all(refresher.schedule.failures(r) for r in trust.partners)))
    finally:
        await refresher.stop()


async def test_failed_fetches_are_logged_together(
    pair: list[RunningNode],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No log line per failed fetch: one line says how many failed, of how many partners,
    why, and names the first; the loop writes it when the period is over, stop writes what
    is left."""
    monkeypatch.setattr(refresher_module, "FAILURES_LOGGED_EVERY", 3600.0)
    shaoyang = await pair[0].start()
    trust = await down_partners(shaoyang.db, tmp_path, 20)
    refresher = CatalogRefresher(shaoyang.db, trust, shaoyang.fed.client, start_rate=1000.0)
    caplog.set_level(logging.INFO, logger="node.catalog.refresher")

    def lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "not refreshed" in r.getMessage()]

    refresher.start()
    try:
        await wait_until(lambda: _true(all(refresher.schedule.failures(r) for r in trust.partners)))
        assert lines() == []  # nothing per failure, and the period is not over
    finally:
        await refresher.stop()
    (line,) = lines()  # written at stop
    summary = vars(line)
    assert line.getMessage() == "partner catalogues not refreshed"
    assert summary["failures"] >= 20 and summary["partners"] == 20
    assert summary["why"] == {"ClientConnectorError": summary["failures"]}
    assert summary["first_partner"] in trust.partners
    assert summary["first_why"].startswith("ClientConnectorError")
    # A period over: the running refresher writes the line (other partners: these ones now
    # wait for the retry their failures planned).
    caplog.clear()
    monkeypatch.setattr(refresher_module, "FAILURES_LOGGED_EVERY", 0.0)
    trust = await down_partners(shaoyang.db, tmp_path, 20, first=120000)
    refresher = CatalogRefresher(shaoyang.db, trust, shaoyang.fed.client, start_rate=1000.0)
    refresher.start()
    try:
        await wait_until(lambda: _true(sum(vars(r)["failures"] for r in lines()) >= 20))
    finally:
        await refresher.stop()


async def test_a_restart_plans_partners_that_were_down_from_their_last_failure(
    pair: list[RunningNode], tmp_path: Path
) -> None:
    shaoyang = await pair[0].start()
    trust = await down_partners(shaoyang.db, tmp_path, 20)
    now = time.time()
    # What a run before the restart noted: the first ten failed a minute ago.
    await record_failures(
        shaoyang.db, [(f"{110000 + i}", now - 60.0, "ClientConnectorError: x") for i in range(10)]
    )
    refresher = CatalogRefresher(shaoyang.db, trust, shaoyang.fed.client, start_rate=1000.0)
    others = [f"{110000 + i}" for i in range(10, 20)]
    refresher.start()
    try:
        # The others are tried at once (start slots, a thousand a second) and fail.
        await wait_until(lambda: _true(all(refresher.schedule.failures(r) for r in others)))
    finally:
        await refresher.stop()
    plan = refresher.schedule
    # The first ten wait for the retry their failure before the restart planned.
    down_before = [f"{110000 + i}" for i in range(10)]
    assert all(now + 200 <= (plan.due_at(r) or 0) <= now + 240 for r in down_before)
    assert all(plan.failures(r) == 1 for r in down_before)
