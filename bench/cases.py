"""Back-office case queries at scale: N realistic cases, every inbox query timed.

    python -m bench.cases [--n 1000000] [--database sqlite|postgres] [--repeat 50]
                          [--out bench/results/cases-<db>.json]

What it does (see bench/README.md):

1. Makes a fresh database (an SQLite file in a temp dir, or ``CREATE DATABASE`` a fresh one
   on PostgreSQL, dropped at the end) and brings it to the newest schema with
   ``node.storage.migrate.upgrade``.
2. Fills ``cases`` with N generated rows (SQLAlchemy Core ``executemany`` in batches on SQLite,
   asyncpg ``copy_records_to_table`` on PostgreSQL), then runs ANALYZE (``VACUUM (ANALYZE)`` on
   PostgreSQL, the steady state autovacuum keeps a table in).
3. Times each back-office query through ``node.cases.queries.inbox`` on a read connection
   (``Database.read()``, as the staff API does), ``--repeat`` times with varied parameters,
   plus ``queries.supervision``; p50/p95 in ms, and the plan of each statement (EXPLAIN QUERY
   PLAN on SQLite, EXPLAIN and EXPLAIN (ANALYZE, BUFFERS) and the generic plan on PostgreSQL).
4. Prints a table and writes the JSON (parameters, machine, git commit, figures, plans).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url

from bench import procstat
from node.cases import queries
from node.cases.lifecycle import PROVINCIAL_CODES, Status
from node.cases.models import bundles, cases
from node.cases.personal import mask_id_number, mask_phone
from node.clock import today_in_china
from node.storage.database import Database
from node.storage.migrate import upgrade
from tests.support.databases import pg_connect

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
#: The node whose database this is (邵阳县).
REGION = "430523"
#: The goal for every inbox query.
TARGET_P95_MS = 50.0
#: Busier than this (cores used by other processes) and the machine is not quiet.
QUIET_CORES = 0.3
CHINA_OFFSET = 8 * 3600

# -- what the data looks like --------------------------------------------------------------------

#: Share of each status (per cent). About 7% open; most cases are long closed.
STATUS_WEIGHTS: dict[Status, float] = {
    Status.DELIVERED: 69.0,
    Status.APPROVED: 12.0,
    Status.WITHDRAWN: 4.0,
    Status.DENIED: 3.0,
    Status.NOT_ACCEPTED: 3.0,
    Status.DISPATCHED: 2.0,
    Status.ACCEPTED: 3.5,
    Status.SUPPLEMENT_PENDING: 1.0,
    Status.INSPECTION: 0.5,
    Status.RECEIVED: 1.0,
    Status.FORWARDED: 1.0,
}
CLOCKED = {Status.ACCEPTED, Status.SUPPLEMENT_PENDING, Status.INSPECTION}
DECIDED_LATER = {Status.APPROVED, Status.DENIED, Status.DISPATCHED, Status.DELIVERED}
OPEN_STATUSES = [
    Status.ACCEPTED,
    Status.SUPPLEMENT_PENDING,
    Status.INSPECTION,
    Status.RECEIVED,
    Status.FORWARDED,
]

#: 49 partner counties (mostly in the province, some far away), busiest first.
PARTNERS = (
    "430102",
    "430103",
    "430104",
    "430105",
    "430111",
    "430112",
    "430121",
    "430181",
    "430202",
    "430203",
    "430211",
    "430302",
    "430304",
    "430381",
    "430405",
    "430406",
    "430408",
    "430412",
    "430481",
    "430502",
    "430503",
    "430511",
    "430521",
    "430522",
    "430524",
    "430525",
    "430527",
    "430528",
    "430529",
    "430581",
    "430582",
    "430602",
    "430703",
    "430802",
    "430902",
    "431002",
    "431102",
    "431202",
    "431302",
    "433101",
    "110105",
    "310115",
    "440305",
    "440106",
    "330106",
    "320583",
    "420106",
    "510107",
    "500112",
)
assert len(PARTNERS) == 49 and REGION not in PARTNERS

#: (item code, name, promised time limit in working days).
ITEMS = (
    ("000105001000", "个体工商户设立登记", 3),
    ("000105002000", "个体工商户变更登记", 3),
    ("000106001000", "企业设立登记", 5),
    ("000106002000", "企业变更登记", 5),
    ("000106003000", "企业注销登记", 10),
    ("000113001000", "城乡居民养老保险参保登记", 5),
    ("000113002000", "社会保障卡补领换领", 10),
    ("000113003000", "养老保险关系转移接续", 15),
    ("000114001000", "住房公积金异地转移接续", 15),
    ("000114002000", "住房公积金提取", 5),
    ("000115001000", "不动产登记资料查询", 5),
    ("000115002000", "不动产转移登记", 20),
    ("000116001000", "医疗保险异地就医备案", 5),
    ("000117001000", "户口迁移", 20),
    ("000118001000", "食品经营许可", 20),
    ("000118002000", "药品经营许可", 30),
    ("000119001000", "建设工程规划许可", 20),
    ("000120001000", "道路运输经营许可", 20),
    ("000121001000", "取水许可", 45),
    ("000122001000", "林木采伐许可", 60),
)

#: Common surnames, most frequent first (weights roughly follow their share of the population).
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容")
GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文辉力鹏飞宇浩然子涵梓轩欣怡雨萱思远"
    "晨阳佳琪嘉俊志伟海燕春梅秋菊冬雪立新振华德胜福贵长青永红小龙晓东丹丹婷婷雯雯诗琪一鸣天佑博文可馨"
)
ORG_PLACES = ("邵阳", "长沙", "湘潭", "衡阳", "岳阳", "常德", "永州", "怀化", "株洲", "娄底")
ORG_WORDS = ("鑫源", "恒达", "宏图", "金穗", "湘农", "华信", "瑞丰", "博远", "隆盛", "新天地")
ORG_TRADES = ("商贸", "建材", "农业科技", "食品", "物流", "餐饮管理", "电子", "建筑工程")
MATERIALS = (
    "申请表",
    "身份证明",
    "营业执照",
    "授权委托书",
    "不动产权证书",
    "户口簿",
    "房屋租赁合同",
    "场地平面图",
    "检验报告",
)
STREETS = ("塘渡口镇", "白仓镇", "五峰铺镇", "下花桥镇", "九公桥镇", "长阳铺镇", "岩口铺镇")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def _resident_id(rng: random.Random, region: str) -> str:
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    body = f"{region}{born:%Y%m%d}{rng.randrange(1000):03d}"
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return body + check


def _uscc(rng: random.Random, region: str) -> str:
    body = "91" + region + "".join(rng.choice(_USCC_CHARS[:10] + "ABCDEFGH") for _ in range(9))
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return body + _USCC_CHARS[(31 - total % 31) % 31]


def _zipf_weights(count: int, s: float = 0.9) -> list[float]:
    return [1.0 / (k**s) for k in range(1, count + 1)]


@dataclass(slots=True)
class Skeleton:
    """What decides a case's place in the indexes; the rest is filled in batch by batch."""

    received_at: float
    status: Status
    mode: str
    receiving: str
    handling: str
    partner: str
    item: int
    deadline: int | None  # days from today
    accepted: int | None  # days from today
    limit_days: int | None
    bundle_part: tuple[int, int] | None = None  # (part, parts)


class Generator:
    """Deterministic case rows (seeded), in the order a node would have inserted them."""

    def __init__(self, n: int, seed: int, today: date, now: float, closed_deadlines: bool):
        self.n = n
        self.rng = random.Random(seed)
        self.today = today
        self.now = now
        self.closed_deadlines = closed_deadlines
        self.today_epoch = (today - date(1970, 1, 1)).days * 86400 - CHINA_OFFSET
        self.partner_weights = _zipf_weights(len(PARTNERS))
        self.surname_weights = _zipf_weights(len(SURNAMES), 0.8)
        self.statuses = list(STATUS_WEIGHTS)
        self.status_weights = list(STATUS_WEIGHTS.values())
        self.bundle_count = 0

    def _day_time(self, days_from_today: int) -> float:
        """A moment in office hours (08:30-17:30 China time) on that day."""
        return self.today_epoch + days_from_today * 86400 + self.rng.uniform(30600, 63000)

    def _dates(self, status: Status, item: int) -> tuple[float, int | None, int | None, int]:
        """received_at, deadline and accepted_on (days from today), time limit (working days)."""
        rng = self.rng
        limit = ITEMS[item][2]
        if status in CLOCKED:
            deadline = rng.randint(-60, 60)
            calendar_days = math.ceil(limit * 7 / 5)
            if status is not Status.ACCEPTED:
                calendar_days += rng.randint(2, 15)  # the pause moved the deadline
            accepted = deadline - calendar_days
            if accepted > 0:
                accepted = -rng.randint(0, 5)
                limit = max(1, round((deadline - accepted) * 5 / 7))
            received = self._day_time(accepted - rng.randint(0, 2))
            return min(received, self.now - 60), deadline, accepted, limit
        if status in (Status.RECEIVED, Status.FORWARDED):
            return min(self._day_time(-rng.randint(0, 6)), self.now - 60), None, None, limit
        day = -rng.randint(3, 3 * 365)
        if status in DECIDED_LATER:
            accepted = day + rng.randint(0, 2)
            deadline = accepted + math.ceil(limit * 7 / 5) if self.closed_deadlines else None
            return self._day_time(day), deadline, accepted, limit
        return self._day_time(day), None, None, limit

    def skeletons(self) -> list[Skeleton]:
        rng = self.rng
        out: list[Skeleton] = []
        while len(out) < self.n:
            status = rng.choices(self.statuses, self.status_weights)[0]
            item = rng.randrange(len(ITEMS))
            received_at, deadline, accepted, limit = self._dates(status, item)
            roll = rng.random()
            if roll < 0.10:  # 全程网办: received and handled here
                out.append(
                    Skeleton(
                        received_at,
                        status,
                        "online",
                        REGION,
                        REGION,
                        REGION,
                        item,
                        deadline,
                        accepted,
                        limit,
                    )
                )
                continue
            if roll < 0.13:  # 多地联办: one application here, parts handled in 2-3 counties
                parts = rng.randint(2, 3)
                partners = rng.sample(PARTNERS[:20], parts)
                for index, partner in enumerate(partners, 1):
                    st = (
                        status if index == 1 else rng.choices(self.statuses, self.status_weights)[0]
                    )
                    _r, dl, acc, lim = self._dates(st, item)
                    out.append(
                        Skeleton(
                            received_at,
                            st,
                            "joint",
                            REGION,
                            partner,
                            partner,
                            item,
                            dl,
                            acc,
                            lim,
                            (index, parts),
                        )
                    )
                continue
            partner = rng.choices(PARTNERS, self.partner_weights)[0]
            receiving, handling = (REGION, partner) if rng.random() < 0.55 else (partner, REGION)
            out.append(
                Skeleton(
                    received_at,
                    status,
                    "proxy",
                    receiving,
                    handling,
                    partner,
                    item,
                    deadline,
                    accepted,
                    limit,
                )
            )
        del out[self.n :]
        out.sort(key=lambda s: s.received_at)
        return out

    # -- full rows ---------------------------------------------------------------------------

    def _name(self) -> str:
        rng = self.rng
        if rng.random() < 0.01:
            surname = rng.choice(COMPOUND_SURNAMES)
        else:
            surname = rng.choices(SURNAMES, self.surname_weights)[0]
        given = rng.choice(GIVEN_CHARS)
        if rng.random() < 0.7:
            given += rng.choice(GIVEN_CHARS)
        return surname + given

    def _day_iso(self, days_from_today: int | None) -> str | None:
        if days_from_today is None:
            return None
        return (self.today + timedelta(days=days_from_today)).isoformat()

    def rows(
        self, skeletons: list[Skeleton]
    ) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
        """Yields (bundle rows, case rows) in batches, in insertion order."""
        rng = self.rng
        counters: dict[tuple[str, int], int] = {}
        bundle_no: str | None = None
        bundle_id: int | None = None
        batch: list[tuple[Any, ...]] = []
        new_bundles: list[tuple[Any, ...]] = []
        for xt_serial, sk in enumerate(skeletons, 1):
            day_index = int((sk.received_at + CHINA_OFFSET) // 86400)
            day = (date(1970, 1, 1) + timedelta(days=day_index)).strftime("%Y%m%d")
            if sk.bundle_part is None or sk.bundle_part[0] == 1:
                key = (sk.receiving, day_index)
                number = counters.get(key, 0) + 1
                counters[key] = number
                base_no = f"{sk.receiving}-{day}-{number:05d}"
            if sk.bundle_part is not None:
                if sk.bundle_part[0] == 1:
                    self.bundle_count += 1
                    bundle_id, bundle_no = self.bundle_count, base_no
                    new_bundles.append(
                        (
                            bundle_id,
                            bundle_no,
                            f"{ITEMS[sk.item][1]}等{sk.bundle_part[1]}项联办",
                            sk.received_at,
                        )
                    )
                case_no = f"{bundle_no}-{sk.bundle_part[0]}"
            else:
                case_no = base_no
            xt_id = f"XT-{sk.receiving}-{xt_serial:08x}{rng.getrandbits(48):012x}"
            code, item_name, _limit = ITEMS[sk.item]
            person = rng.random() < 0.88
            if person:
                name = self._name()
                id_type = "resident_id"
                id_number = _resident_id(rng, rng.choice((REGION, sk.partner, "430521", "430502")))
                kind = "person"
            else:
                name = (
                    f"{rng.choice(ORG_PLACES)}{rng.choice(ORG_WORDS)}{rng.choice(ORG_TRADES)}"
                    "有限公司"
                )
                id_type, kind = "unified_social_credit_code", "org"
                id_number = _uscc(rng, sk.receiving)
            phone = f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"
            received_iso = time.strftime(
                "%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(sk.received_at + CHINA_OFFSET)
            )
            materials = [
                {
                    "name": m,
                    "status": "submitted" if rng.random() < 0.9 else "deferred",
                    "sha256": f"{rng.getrandbits(256):064x}",
                }
                for m in rng.sample(MATERIALS, rng.randint(2, 4))
            ]
            application: dict[str, Any] = {
                "form": {
                    "事项": item_name,
                    "联系地址": f"邵阳县{rng.choice(STREETS)}{rng.randint(1, 300)}号",
                    "申请事由": "办理" + item_name,
                },
                "materials": materials,
                "delivery": {"method": rng.choice(("pickup", "express"))},
                "identity_verified": True,
                "received_at": received_iso,
            }
            if sk.bundle_part is not None:
                application["bundle"] = {
                    "bundle_no": bundle_no,
                    "part": sk.bundle_part[0],
                    "parts": sk.bundle_part[1],
                    "name": item_name,
                }
            status = sk.status
            details: dict[str, Any] = {}
            pauses: list[list[Any]] = []
            paused = False
            if status is Status.SUPPLEMENT_PENDING:
                start = self._day_iso(min(0, (sk.accepted or 0) + rng.randint(1, 10)))
                pauses = [[start, None, "补正"]]
                paused = True
                details["supplement"] = {"items": ["身份证明"], "deadline": self._day_iso(10)}
            elif status is Status.INSPECTION:
                details["inspection"] = {"scheduled_on": self._day_iso(rng.randint(0, 10))}
            elif status in DECIDED_LATER:
                details["decision"] = {
                    "result": "denied" if status is Status.DENIED else "approved",
                    "note": "经审查，符合法定条件"
                    if status is not Status.DENIED
                    else "材料不符合要求",
                }
                if status in (Status.DISPATCHED, Status.DELIVERED):
                    details["dispatch"] = {
                        "method": "express",
                        "tracking_no": f"SF{rng.randrange(10**12):012d}",
                    }
            deadline = self._day_iso(sk.deadline)
            if status in CLOCKED:
                promised = deadline
            elif sk.accepted is not None and sk.limit_days is not None:
                promised = self._day_iso(sk.accepted + math.ceil(sk.limit_days * 7 / 5))
            else:
                promised = None
            warning_from = self._day_iso(sk.deadline - 3) if sk.deadline is not None else None
            # 容缺 still outstanding: open cases with a deferred material, due 14 calendar days
            # (10 working days) after 收件, warning 3 days before.
            deferred_until = deferred_warning = None
            if status in OPEN_STATUSES and any(m["status"] == "deferred" for m in materials):
                received_day = (
                    int((sk.received_at + CHINA_OFFSET) // 86400)
                    - (self.today_epoch + CHINA_OFFSET) // 86400
                )
                deferred_until = self._day_iso(received_day + 14)
                deferred_warning = self._day_iso(received_day + 11)
            updated = sk.received_at + rng.uniform(0, 86400 * 20)
            batch.append(
                (
                    case_no,
                    xt_id,
                    sk.mode,
                    code,
                    item_name,
                    sk.receiving,
                    sk.handling,
                    sk.partner,
                    str(status),
                    PROVINCIAL_CODES[status],
                    bundle_id if sk.bundle_part is not None else None,
                    kind,
                    name,
                    id_type,
                    id_number,
                    phone,
                    mask_id_number(id_number),
                    mask_phone(phone),
                    hashlib.sha256(f"{case_no}:{rng.randrange(10**6):06d}".encode()).hexdigest(),
                    json.dumps(application, ensure_ascii=False),
                    json.dumps(details, ensure_ascii=False),
                    sk.received_at,
                    self._day_iso(sk.accepted),
                    sk.limit_days if sk.accepted is not None else None,
                    json.dumps(pauses, ensure_ascii=False),
                    paused,
                    pauses[0][0] if paused else None,
                    promised,
                    deadline,
                    warning_from,
                    3 if sk.accepted is not None else None,
                    False,
                    deferred_until,
                    deferred_warning,
                    10 if deferred_until else None,
                    3 if deferred_until else None,
                    False,
                    None,
                    sk.received_at,
                    min(updated, self.now),
                    0,
                    "",
                )
            )
            if len(batch) >= self.batch_size:
                yield new_bundles, batch
                batch, new_bundles = [], []
        if batch or new_bundles:
            yield new_bundles, batch

    batch_size = 20_000


#: Column order of the generated tuples (everything but ``id``).
COLUMNS = (
    "case_no",
    "xt_id",
    "mode",
    "item_code",
    "item_name",
    "receiving_region",
    "handling_region",
    "partner_region",
    "status",
    "status_code",
    "bundle_id",
    "applicant_kind",
    "applicant_name",
    "applicant_id_type",
    "applicant_id_number",
    "applicant_phone",
    "applicant_id_masked",
    "applicant_phone_masked",
    "query_hash",
    "application",
    "details",
    "received_at",
    "accepted_on",
    "time_limit_days",
    "pauses",
    "paused",
    "paused_since",
    "promised_date",
    "deadline",
    "warning_from",
    "warning_days",
    "deadline_provisional",
    "deferred_until",
    "deferred_warning_from",
    "deferred_days",
    "deferred_warning_days",
    "deferred_provisional",
    "rectification_due",
    "created_at",
    "updated_at",
    "event_count",
    "head_hash",
)
BUNDLE_COLUMNS = ("id", "bundle_no", "name", "created_at")
assert set(COLUMNS) | {"id"} == {c.name for c in cases.columns}


# -- databases ---------------------------------------------------------------------------------


async def _pg_admin(pg_url: str, sql: str, *, fetch: bool = False) -> Any:
    conn = await pg_connect(pg_url)
    try:
        return await conn.fetchval(sql) if fetch else await conn.execute(sql)
    finally:
        await conn.close()


@dataclass
class Fresh:
    """The database under test, and how to get rid of it."""

    kind: str
    url: str
    tmp: Path | None = None
    pg_admin_url: str | None = None
    pg_name: str | None = None

    @classmethod
    async def create(cls, kind: str, pg_url: str) -> Fresh:
        if kind == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix="tb-bench-cases-"))
            return cls(kind, f"sqlite+aiosqlite:///{tmp / 'cases.db'}", tmp=tmp)
        name = f"tb_bench_cases_{uuid.uuid4().hex[:8]}"
        await _pg_admin(pg_url, f'CREATE DATABASE "{name}"')
        url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        return cls(kind, url, pg_admin_url=pg_url, pg_name=name)

    @property
    def sqlite_path(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "cases.db"

    async def drop(self, keep: bool) -> None:
        if keep:
            print(f"kept: {self.tmp or self.pg_name}")
            return
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self.pg_name is not None and self.pg_admin_url is not None:
            try:
                await _pg_admin(
                    self.pg_admin_url, f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'
                )
            except Exception as exc:  # leave it, but say so
                print(f"could not drop database {self.pg_name}: {exc}", file=sys.stderr)


# -- filling -----------------------------------------------------------------------------------


async def fill(db: Database, fresh: Fresh, gen: Generator) -> dict[str, Any]:
    started = time.perf_counter()
    skeletons = gen.skeletons()
    skeleton_s = time.perf_counter() - started
    generate_s = 0.0
    insert_s = 0.0
    done = 0
    pg = None
    if not db.is_sqlite:
        pg = await pg_connect(fresh.url)
    try:
        rows = gen.rows(skeletons)
        last_report = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            try:
                new_bundles, batch = next(rows)
            except StopIteration:
                break
            t1 = time.perf_counter()
            generate_s += t1 - t0
            if pg is not None:
                async with pg.transaction():
                    if new_bundles:
                        await pg.copy_records_to_table(
                            "bundles", records=new_bundles, columns=list(BUNDLE_COLUMNS)
                        )
                    await pg.copy_records_to_table("cases", records=batch, columns=COLUMNS)
            else:
                async with db.write() as conn:
                    if new_bundles:
                        await conn.execute(
                            bundles.insert(),
                            [dict(zip(BUNDLE_COLUMNS, b, strict=True)) for b in new_bundles],
                        )
                    await conn.execute(
                        cases.insert(), [dict(zip(COLUMNS, r, strict=True)) for r in batch]
                    )
            insert_s += time.perf_counter() - t1
            done += len(batch)
            if time.perf_counter() - last_report > 10:
                last_report = time.perf_counter()
                elapsed = last_report - started
                print(f"  {done:,} rows, {elapsed:.0f} s, {done / elapsed:,.0f} rows/s", flush=True)
        if pg is not None and gen.bundle_count:
            await pg.execute(
                f"SELECT setval(pg_get_serial_sequence('bundles', 'id'), {gen.bundle_count})"
            )
        # A bulk load bypasses the service, so the maintained status counts are recounted once,
        # as migration 0007 does for an existing table.
        t0 = time.perf_counter()
        async with db.write() as conn:
            await queries.rebuild_status_counts(conn)
        counts_s = time.perf_counter() - t0
        fill_s = time.perf_counter() - started
        t0 = time.perf_counter()
        if pg is not None:
            await pg.execute("VACUUM (ANALYZE)")
            analyze = "VACUUM (ANALYZE)"
        else:
            raw = sqlite3.connect(fresh.sqlite_path, isolation_level=None)
            try:
                raw.execute("ANALYZE")
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
            analyze = "ANALYZE; PRAGMA wal_checkpoint(TRUNCATE)"
        analyze_s = time.perf_counter() - t0
        sizes = await _sizes(db, fresh, pg)
    finally:
        if pg is not None:
            await pg.close()
    return {
        "rows": done,
        "bundles": gen.bundle_count,
        "fill_s": fill_s,
        "rows_per_s": done / fill_s,
        "skeleton_s": skeleton_s,
        "generate_s": generate_s,
        "insert_s": insert_s,
        "insert_rows_per_s": done / insert_s if insert_s else None,
        "method": "asyncpg copy_records_to_table"
        if pg is not None
        else f"SQLAlchemy Core executemany, {gen.batch_size} rows per transaction",
        "batch_rows": gen.batch_size,
        "status_counts_s": counts_s,
        "analyze": analyze,
        "analyze_s": analyze_s,
        "sizes": sizes,
    }


async def _sizes(db: Database, fresh: Fresh, pg: Any) -> dict[str, Any]:
    if pg is None:
        path = fresh.sqlite_path
        out: dict[str, Any] = {"file_mib": path.stat().st_size / 2**20}
        raw = sqlite3.connect(path)
        try:
            try:
                rows = raw.execute(
                    "SELECT name, SUM(pgsize) FROM dbstat WHERE name LIKE '%cases%' GROUP BY name"
                ).fetchall()
                out["objects_mib"] = {name: size / 2**20 for name, size in rows}
            except sqlite3.DatabaseError:
                pass  # no dbstat in this build
        finally:
            raw.close()
        return out
    rows = await pg.fetch(
        "SELECT c.relname, pg_relation_size(c.oid) AS size FROM pg_class c "
        "WHERE c.relname LIKE '%cases%' AND c.relkind IN ('r', 'i') ORDER BY c.relname"
    )
    return {
        "total_mib": await pg.fetchval("SELECT pg_total_relation_size('cases')") / 2**20,
        "objects_mib": {r["relname"]: r["size"] / 2**20 for r in rows},
    }


# -- the queries -------------------------------------------------------------------------------


@dataclass
class Sample:
    """Real cases to search for."""

    case_nos: list[str]
    name_prefixes: list[str]
    partners: list[str]


async def pick_samples(db: Database, n_rows: int, count: int, rng: random.Random) -> Sample:
    ids = sorted(rng.sample(range(1, n_rows + 1), min(n_rows, count * 4)))
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(
                    cases.c.case_no,
                    cases.c.applicant_kind,
                    cases.c.applicant_name,
                    cases.c.partner_region,
                ).where(cases.c.id.in_(ids))
            )
        ).all()
    rng.shuffle(rows)
    names = []
    for r in rows:
        if r.applicant_kind == "person":
            surname = 2 if r.applicant_name[:2] in COMPOUND_SURNAMES else 1
            names.append(r.applicant_name[: surname + 1])
    return Sample(
        case_nos=[r.case_no for r in rows],
        name_prefixes=names,
        partners=[r.partner_region for r in rows if r.partner_region != REGION] or [PARTNERS[0]],
    )


def _page(rng: random.Random) -> int:
    return rng.choice((0, 0, 50, 100))


def query_specs(
    sample: Sample,
) -> list[tuple[str, str, Callable[[random.Random, int], dict[str, Any]]]]:
    """(name, description, params(rng, i)) of each inbox query."""
    clocked = ["accepted", "inspection", "supplement_pending"]

    def nth(values: list[str], i: int) -> str:
        return values[i % len(values)]

    return [
        ("all", "all cases, first page, overdue first", lambda r, i: {}),
        (
            "status_accepted",
            "status=accepted (pages 1-3)",
            lambda r, i: {"status": ["accepted"], "offset": _page(r)},
        ),
        (
            "status_clocked",
            "status=accepted,inspection,supplement_pending (pages 1-3)",
            lambda r, i: {"status": clocked, "offset": _page(r)},
        ),
        (
            "overdue",
            "time_status=overdue (pages 1-3)",
            lambda r, i: {"time_status": "overdue", "offset": _page(r)},
        ),
        (
            "warning",
            "time_status=warning (pages 1-3)",
            lambda r, i: {"time_status": "warning", "offset": _page(r)},
        ),
        (
            "partner_open",
            "partner=X + an open status",
            lambda r, i: {
                "partner": nth(sample.partners, i),
                "status": [str(r.choice(OPEN_STATUSES))],
            },
        ),
        (
            "partner_delivered",
            "partner=X + status=delivered (a closed status)",
            lambda r, i: {"partner": nth(sample.partners, i), "status": ["delivered"]},
        ),
        (
            "q_case_no_prefix",
            "q=<region>-<yyyymmdd> of a real case",
            lambda r, i: {"q": nth(sample.case_nos, i)[:15]},
        ),
        (
            "q_name_prefix",
            "q=<surname + first given char> of a real applicant",
            lambda r, i: {"q": nth(sample.name_prefixes, i)},
        ),
        ("q_case_no_exact", "q=<exact case_no>", lambda r, i: {"q": nth(sample.case_nos, i)}),
    ]


class Capture:
    """The statements (and their parameters) a block of code sends, from the engine's events."""

    def __init__(self, sync_engine: Any) -> None:
        self.engine = sync_engine
        self.statements: list[tuple[str, Any]] = []

    def _on(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        self.statements.append((statement, parameters))

    def __enter__(self) -> Capture:
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)


def _pg_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


async def explain(db: Database, statement: str, parameters: Any) -> dict[str, Any]:
    params = tuple(parameters) if isinstance(parameters, (list, tuple)) else parameters
    async with db.read() as conn:
        if db.is_sqlite:
            rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)).all()
            depth: dict[int, int] = {0: -1}
            plan = []
            for node_id, parent, _unused, detail in rows:
                depth[node_id] = depth.get(parent, -1) + 1
                plan.append("  " * depth[node_id] + detail)
            return {"plan": plan}
        plan = [r[0] for r in (await conn.exec_driver_sql("EXPLAIN " + statement, params)).all()]
        analyzed = [
            r[0]
            for r in (
                await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            ).all()
        ]
        # The plan a prepared statement gets once PostgreSQL switches to a generic plan (after
        # five executions, if it does not look costlier than the custom ones).
        generic: list[str] | str
        try:
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.execute("PREPARE tb_bench_q AS " + statement)
            try:
                await raw.execute("SET plan_cache_mode = force_generic_plan")
                args = ", ".join(_pg_literal(p) for p in params)
                generic = [
                    r[0]
                    for r in await raw.fetch(
                        f"EXPLAIN EXECUTE tb_bench_q({args})"
                        if args
                        else "EXPLAIN EXECUTE tb_bench_q"
                    )
                ]
            finally:
                await raw.execute("RESET plan_cache_mode")
                await raw.execute("DEALLOCATE tb_bench_q")
        except Exception as exc:  # informative only
            generic = f"unavailable: {exc}"
        return {"plan": plan, "explain_analyze": analyzed, "generic_plan": generic}


def nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": nearest_rank(ordered, 0.50) * 1000,
        "p95_ms": nearest_rank(ordered, 0.95) * 1000,
        "max_ms": ordered[-1] * 1000,
        "min_ms": ordered[0] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _postgres_cpu() -> float:
    """CPU seconds of the local PostgreSQL server: its live processes, plus what the postmaster
    has reaped (backends and parallel workers that exited), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        stats[int(entry.name)] = raw[raw.rindex(")") + 2 :].split()
    total = 0.0
    for fields in stats.values():
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        if int(fields[1]) not in stats:  # the postmaster: add its reaped children
            total += (int(fields[13]) + int(fields[14])) / ticks  # cutime, cstime
    return total


class CpuWatch:
    """Cores used over a block: the whole machine, this process, the PostgreSQL server, and
    the rest (other people's work, which makes the figures unreliable on 2 cores)."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres

    def _sample(self) -> tuple[Any, float, float, float]:
        pg = _postgres_cpu() if self.postgres else 0.0
        return procstat.machine_cpu(), _own_cpu(), pg, time.perf_counter()

    def __enter__(self) -> CpuWatch:
        self.start = self._sample()
        return self

    def __exit__(self, *exc: Any) -> None:
        m1, c1, p1, w1 = self._sample()
        m0, c0, p0, w0 = self.start
        wall = max(w1 - w0, 1e-9)
        machine, own, pg = (m1 - m0).busy / wall, (c1 - c0) / wall, (p1 - p0) / wall
        self.result = {
            "machine_cores": round(machine, 2),
            "own_process_cores": round(own, 2),
            "postgres_cores": round(pg, 2) if self.postgres else None,
            "other_cores": round(max(0.0, machine - own - pg), 2),
        }

    @property
    def disturbed(self) -> bool:
        return self.result["other_cores"] > QUIET_CORES


async def wait_for_quiet(max_wait: float, postgres: bool = False) -> dict[str, Any]:
    """Wait (up to max_wait s) until other processes use less than QUIET_CORES."""
    started = time.monotonic()
    while True:
        with CpuWatch(postgres) as watch:
            await asyncio.sleep(2.0)
        others = watch.result["other_cores"]
        waited = time.monotonic() - started
        if others < QUIET_CORES or waited >= max_wait:
            return {
                "waited_s": round(waited, 1),
                "other_cores": others,
                "quiet": others < QUIET_CORES,
            }
        print(f"  machine busy ({others:.2f} cores used by others), waiting…", flush=True)


async def _timed(
    params: Params, label: str, run: Callable[[int], Any]
) -> tuple[list[float], list[Any], dict[str, Any], list[dict[str, Any]]]:
    """Run ``run(i)`` for i in range(count) and time each; run the whole series again (after
    waiting for quiet) when other processes used the CPUs meanwhile, up to --retry-disturbed
    times. Returns samples, results, cpu, and the discarded series."""
    postgres = params.database == "postgres"
    count = params.supervision_repeat if label == "supervision" else params.repeat
    discarded: list[dict[str, Any]] = []
    while True:
        samples: list[float] = []
        results: list[Any] = []
        with CpuWatch(postgres) as watch:
            for i in range(count):
                t0 = time.perf_counter()
                results.append(await run(i))
                samples.append(time.perf_counter() - t0)
        if not watch.disturbed or len(discarded) >= params.retry_disturbed:
            return samples, results, {**watch.result, "disturbed": watch.disturbed}, discarded
        discarded.append({**figures(samples), "cpu": watch.result})
        print(
            f"  {label}: other processes used {watch.result['other_cores']} cores; "
            "waiting for quiet and running it again",
            flush=True,
        )
        await wait_for_quiet(params.quiet_wait, postgres)


async def run_queries(
    db: Database, sample: Sample, params: Params, today: date
) -> tuple[dict[str, Any], dict[str, Any]]:
    async with db.read() as conn:
        sync_engine = conn.engine.sync_engine
    results: dict[str, Any] = {}
    specs = query_specs(sample)

    async def one(kwargs: dict[str, Any]) -> int:
        async with db.read() as conn:
            out = await queries.inbox(conn, today=today, region=REGION, **kwargs)
        return len(out["cases"])

    for index, (name, description, make) in enumerate(specs):
        rng = random.Random(params.seed * 100 + index)
        # Warm-up, which is also the call whose SQL is captured and explained.
        warm = make(rng, params.repeat)
        with Capture(sync_engine) as cap:
            await one(warm)
        statement, parameters = cap.statements[-1]
        plan = await explain(db, statement, parameters)
        kwargs_list = [make(rng, i) for i in range(params.repeat)]

        async def call(i: int, kwargs_list: list[dict[str, Any]] = kwargs_list) -> int:
            return await one(kwargs_list[i])

        samples, rows, cpu, discarded = await _timed(params, name, call)
        entry = {
            "description": description,
            **figures(samples),
            "meets_target": nearest_rank(sorted(samples), 0.95) * 1000 < TARGET_P95_MS,
            "rows_mean": statistics.fmean(rows),
            "examples": kwargs_list[:3],
            "explained_params": warm,
            "sql": statement,
            "sql_parameters": [str(p) for p in (parameters or ())],
            **plan,
            "samples_ms": [round(s * 1000, 3) for s in samples],
            "cpu": cpu,
            "discarded_series": discarded,
        }
        results[name] = entry
        print(_row(name, entry), flush=True)

    # supervision: count aggregates over the whole table, plus two inbox queries and ratings.
    with Capture(sync_engine) as cap:
        async with db.read() as conn:
            await queries.supervision(conn, today=today)
    plans = []
    for statement, parameters in cap.statements:
        if statement.lstrip().upper().startswith("SELECT"):
            plans.append({"sql": statement, **(await explain(db, statement, parameters))})

    async def supervise(_i: int) -> None:
        async with db.read() as conn:
            await queries.supervision(conn, today=today)

    samples, _none, cpu, discarded = await _timed(params, "supervision", supervise)
    sup = {
        "description": "supervision(): counts by partner/status/time status, overdue, warning, "
        "open rectifications",
        "repeat": params.supervision_repeat,
        **figures(samples),
        "samples_ms": [round(s * 1000, 3) for s in samples],
        "cpu": cpu,
        "discarded_series": discarded,
        "statements": plans,
    }
    print(_row("supervision", sup), flush=True)
    return results, sup


def _plan_summary(entry: dict[str, Any]) -> str:
    plan = entry.get("plan") or []
    if not plan:
        return ""
    if entry.get("explain_analyze") is not None:  # PostgreSQL: the plan nodes, outermost first
        nodes = [
            line.strip().removeprefix("->").strip().split("  (")[0]
            for index, line in enumerate(plan)
            if index == 0 or line.strip().startswith("->")
        ]
        return " > ".join(nodes)[:110]
    return "; ".join(p.strip() for p in plan)[:110]


def _row(name: str, entry: dict[str, Any]) -> str:
    flag = "" if name == "supervision" else ("ok" if entry["p95_ms"] < TARGET_P95_MS else "MISS")
    if entry.get("cpu", {}).get("disturbed"):
        flag += "*"
    plan = _plan_summary(entry) if "plan" in entry else "(see statements)"
    rows = f"{entry['rows_mean']:5.1f}" if "rows_mean" in entry else "    -"
    return (
        f"  {name:<18} {rows} {entry['p50_ms']:9.1f} {entry['p95_ms']:9.1f} "
        f"{entry['max_ms']:9.1f}  {flag:<4}  {plan}"
    )


# -- main --------------------------------------------------------------------------------------


@dataclass
class Params:
    n: int
    database: str
    repeat: int
    supervision_repeat: int
    seed: int
    pg_url: str
    batch: int
    closed_deadlines: bool
    keep: bool
    quiet_wait: float
    retry_disturbed: int


async def _main(params: Params, out: Path) -> int:
    machine = procstat.machine_info(REPO)
    if params.database == "postgres":
        machine["postgres"] = await _pg_admin(params.pg_url, "SHOW server_version", fetch=True)
        settings = {}
        for name in (
            "shared_buffers",
            "work_mem",
            "effective_cache_size",
            "random_page_cost",
            "max_parallel_workers_per_gather",
            "jit",
            "lc_collate",
        ):
            with contextlib.suppress(Exception):
                settings[name] = await _pg_admin(params.pg_url, f"SHOW {name}", fetch=True)
        machine["postgres_settings"] = settings
    now = time.time()
    today = today_in_china(now)
    print(
        f"cases bench: n={params.n:,} database={params.database} repeat={params.repeat} "
        f"today={today} closed_deadlines={params.closed_deadlines}"
    )
    print(
        f"machine: {machine['cpu_count']} cpus, python {machine['python']}, "
        f"sqlite {machine['sqlite']}"
        + (f", postgres {machine.get('postgres')}" if params.database == "postgres" else "")
        + f", commit {str(machine['git_commit'])[:12]}{' (dirty)' if machine['git_dirty'] else ''}"
    )
    fresh = await Fresh.create(params.database, params.pg_url)
    db = Database(fresh.url)
    report: dict[str, Any] = {
        "bench": "cases",
        "parameters": {
            "n": params.n,
            "database": params.database,
            "repeat": params.repeat,
            "supervision_repeat": params.supervision_repeat,
            "seed": params.seed,
            "batch": params.batch,
            "closed_deadlines": params.closed_deadlines,
            "region": REGION,
            "today": today.isoformat(),
            "target_p95_ms": TARGET_P95_MS,
            "status_weights_percent": {str(k): v for k, v in STATUS_WEIGHTS.items()},
        },
        "machine": machine,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        await upgrade(db)
        gen = Generator(params.n, params.seed, today, now, params.closed_deadlines)
        gen.batch_size = params.batch
        print("filling…", flush=True)
        report["fill"] = fill_report = await fill(db, fresh, gen)
        f = fill_report
        print(
            f"filled {f['rows']:,} rows in {f['fill_s']:.1f} s ({f['rows_per_s']:,.0f} rows/s; "
            f"generating {f['generate_s'] + f['skeleton_s']:.1f} s, inserting "
            f"{f['insert_s']:.1f} s = {f['insert_rows_per_s']:,.0f} rows/s); "
            f"{f['analyze']} {f['analyze_s']:.1f} s"
        )
        async with db.read() as conn:
            counts = dict(
                (
                    await conn.execute(
                        select(cases.c.status, func.count()).group_by(cases.c.status)
                    )
                ).all()
            )
        report["status_counts"] = counts
        sample = await pick_samples(
            db, fill_report["rows"], params.repeat + 1, random.Random(params.seed + 2)
        )
        report["quiet"] = await wait_for_quiet(params.quiet_wait, params.database == "postgres")
        if not report["quiet"]["quiet"]:
            others = report["quiet"]["other_cores"]
            print(f"  WARNING: machine not quiet ({others} cores used by others)")
        load0 = os.getloadavg()
        print(f"  {'query':<18} {'rows':>5} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}  goal  plan")
        results, sup = await run_queries(db, sample, params, today)
        report["loadavg"] = {"before": load0, "after": os.getloadavg()}
        report["queries"] = results
        report["supervision"] = sup
        missed = [k for k, v in results.items() if not v["meets_target"]]
        report["missed_target"] = missed
        if any(v["cpu"]["disturbed"] for v in [*results.values(), sup]):
            print("  * other processes used the CPUs during that series (see cpu in the JSON)")
        met = len(results) - len(missed)
        print(
            f"p95 < {TARGET_P95_MS:.0f} ms: {met}/{len(results)} inbox queries"
            + (f"; missed: {', '.join(missed)}" if missed else "")
        )
    finally:
        await db.dispose()
        await fresh.drop(params.keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cases", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="cases to generate")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=50, help="timed runs of each inbox query")
    parser.add_argument(
        "--supervision-repeat",
        type=int,
        help="timed runs of supervision() (default: min(repeat, 10); it scans the whole table)",
    )
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--batch", type=int, default=20_000, help="rows per insert batch")
    parser.add_argument(
        "--closed-deadlines",
        action="store_true",
        help="keep deadline/warning_from on decided cases too, as the node does "
        "(default: NULL except for accepted/inspection/supplement_pending)",
    )
    parser.add_argument("--pg-url", default=os.environ.get("TONGBAN_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        metavar="S",
        help="wait up to S seconds for other processes to leave the CPUs before "
        "timing (0: do not wait)",
    )
    parser.add_argument(
        "--retry-disturbed",
        type=int,
        default=3,
        metavar="K",
        help="time a query's series again (up to K times) when other processes used the CPUs "
        "meanwhile; the discarded series stay in the JSON",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (temp dir / PG db)")
    parser.add_argument("--out", type=Path, help="default bench/results/cases-<db>.json")
    args = parser.parse_args(argv)
    params = Params(
        n=args.n,
        database=args.database,
        repeat=args.repeat,
        supervision_repeat=args.supervision_repeat or min(args.repeat, 10),
        seed=args.seed,
        pg_url=args.pg_url,
        batch=args.batch,
        closed_deadlines=args.closed_deadlines,
        keep=args.keep,
        quiet_wait=args.quiet_wait,
        retry_disturbed=args.retry_disturbed,
    )
    out = args.out or REPO / "bench" / "results" / f"cases-{args.database}.json"
    return asyncio.run(_main(params, out))


if __name__ == "__main__":
    sys.exit(main())
