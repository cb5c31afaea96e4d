"""The catalogue at national size: R regions × K items stored through the real storing path,
then the window chooser's search timed.

    python -m bench.catalog [--regions 3000] [--items 200] [--database sqlite|postgres]
                            [--queries 600] [--out bench/results/catalog-<db>.json]

What it does (see bench/README.md):

1. Makes a fresh database (an SQLite file in a temp dir, or a fresh PostgreSQL database made
   with ``CREATE DATABASE`` and dropped at the end) at the newest schema.
2. Generates R partner regions (codes in real provinces, made-up county names) with K items
   each, names and departments built from the vocabulary of the demo catalogues
   (node/demo_catalog/*.toml) and the common kinds of 事项 and 实施部门, each item with 2–6
   materials. Our own catalogue is the demo catalogue of 邵阳县.
3. Stores each region's catalogue signed (``sign_catalog``, a key per region) through
   ``partner_cache.store_partner_catalog``, the path the refresher uses: the cache row and the search
   index in one transaction per region. Times it (the index build time), then the DB size.
4. Times ``node.catalog.search.search`` (what /window runs) over a mix of queries: name
   substrings of 2, 3 and 4 characters, 1-character names, exact codes, code prefixes,
   departments, region names, a province filter, a region filter, a mode filter, later pages.
   p50/p95/p99 in ms overall and per kind; the target is p95 < 100 ms over the mix.
5. Prints a table and writes the JSON (parameters, machine, git commit, figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import procstat
from node.catalog.loading import load_catalog, parse_catalog
from node.catalog.partner_cache import store_partner_catalog
from node.catalog.search import SearchQuery, search
from node.storage.database import Database
from node.storage.migrate import upgrade
from protocol.catalog import Catalog, Item, check_item, sign_catalog
from protocol.keys import generate_private_key
from protocol.regions import PROVINCES
from tests.support.databases import pg_connect

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "node" / "demo_catalog"
DEFAULT_PG = os.environ.get(
    "TONGBAN_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
OWN = "430523"
TARGET_P95_MS = 100.0

# -- the vocabulary ---------------------------------------------------------------------------

SUBJECTS = [
    "食品经营",
    "食品生产",
    "小餐饮",
    "药品零售",
    "药品经营",
    "医疗器械经营",
    "公共场所卫生",
    "建筑工程施工",
    "道路运输经营",
    "道路旅客运输",
    "出租汽车经营",
    "人力资源服务",
    "劳务派遣",
    "农作物种子生产经营",
    "排污",
    "取水",
    "特种设备使用",
    "医疗机构执业",
    "烟草专卖零售",
    "出版物零售",
    "娱乐场所经营",
    "旅行社设立",
    "营业性演出",
    "危险化学品经营",
    "燃气经营",
    "户外广告设置",
    "城市道路占用挖掘",
    "林木采伐",
    "动物防疫条件",
    "兽药经营",
    "饲料生产",
    "农药经营",
    "民办学校办学",
    "职业技能培训",
    "养老机构设立",
    "社会团体",
    "残疾人证",
    "不动产",
    "企业开办",
    "个体工商户",
    "教师资格",
    "医师执业",
    "护士执业",
    "社会保障卡",
    "城乡居民养老保险",
    "失业保险金",
    "住房公积金",
    "生育保险待遇",
    "购房补贴",
    "消防验收",
    "二手房转移",
    "机动车驾驶证",
    "船舶",
    "水利工程",
    "建设工程规划",
    "临时占用林地",
    "商品房预售",
    "放射诊疗",
    "母婴保健技术服务",
    "献血证",
    "拖拉机驾驶证",
    "渔业捕捞",
    "粮食收购",
    "酒类经营",
    "再生资源回收",
    "拍卖业务",
    "典当业务",
    "成品油零售",
]
ACTIONS = [
    "许可",
    "许可证核发",
    "登记",
    "备案",
    "审批",
    "核准",
    "认定",
    "确认",
    "证明",
    "申领",
    "变更",
    "延续",
    "注销",
    "补办",
    "换发",
    "查询",
    "提取",
    "发放",
]
VARIANTS = [
    "",
    "",
    "",
    "（新办）",
    "（变更）",
    "（延续）",
    "（注销）",
    "（遗失补办）",
    "（法定代表人变更）",
    "（地址变更）",
    "（首次申请）",
    "（分阶段办理）",
]
DEPARTMENTS = [
    "行政审批服务局",
    "市场监督管理局",
    "卫生健康委员会",
    "交通运输局",
    "自然资源和规划局",
    "住房和城乡建设局",
    "人力资源和社会保障局",
    "公安局",
    "农业农村局",
    "教育局",
    "民政局",
    "生态环境局",
    "文化旅游广电局",
    "医疗保障局",
    "林业局",
    "水利局",
    "应急管理局",
    "商务局",
    "残疾人联合会",
    "住房公积金管理中心",
    "不动产登记中心",
    "政务服务中心",
]
PLACE_CHARS = (
    "安宁平阳江山华新清永和兴昌德隆泰丰源临城东西南北武文嘉宁远定海云溪石桥河湖川岭峰泉"
    "阜庆长乐福寿康吉祥瑞金玉宝鹤凤龙虎鹿松柏桂兰梅竹青白黄红绿"
)
PLACE_SUFFIXES = ["县", "县", "县", "市", "区", "旗"]
CATEGORIES = ["XK", "QR", "DJ", "GG", "BA", "QT"]
MODE_SETS = [["proxy"], ["proxy", "online"], ["proxy", "online", "joint"], ["online"], ["joint"]]


def demo_vocabulary() -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Item names, material names and one item (as the template of every generated item) from
    the demo catalogues."""
    names: list[str] = []
    materials: list[str] = []
    template: dict[str, Any] | None = None
    for path in sorted(DEMO.glob("*.toml")):
        region = path.stem
        for item in parse_catalog(region, path.read_text(encoding="utf-8")):
            names.append(item.name)
            materials.extend(m.name for m in item.materials)
            if template is None:
                template = item.to_dict()
    assert template is not None
    return names, sorted(set(materials)), [template]


@dataclass(frozen=True)
class Region:
    code: str
    name: str


def make_regions(count: int, rng: random.Random) -> list[Region]:
    provinces = [p for p in PROVINCES if p not in {"71", "81", "82"}]
    regions: dict[str, Region] = {}
    names: set[str] = set()
    while len(regions) < count:
        province = rng.choice(provinces)
        code = f"{province}{rng.randint(1, 40):02d}{rng.randint(1, 99):02d}"
        if code in regions or code == OWN:
            continue
        name = "".join(rng.sample(PLACE_CHARS, 2)) + rng.choice(PLACE_SUFFIXES)
        if name in names:
            continue
        names.add(name)
        regions[code] = Region(code, name)
    return list(regions.values())


def make_items(
    region: Region,
    count: int,
    rng: random.Random,
    vocab: tuple[list[str], list[str], list[dict[str, Any]]],
) -> list[Item]:
    demo_names, material_names, (template,) = vocab
    items: list[Item] = []
    used: set[str] = set()
    serial = 0
    while len(items) < count:
        if rng.random() < 0.1:
            name = rng.choice(demo_names)
        else:
            name = rng.choice(SUBJECTS) + rng.choice(ACTIONS) + rng.choice(VARIANTS)
        if name in used:
            continue
        used.add(name)
        serial += 1
        legal = rng.choice([5, 7, 10, 15, 20, 30, 60])
        materials = []
        for n, material in enumerate(rng.sample(material_names, rng.randint(2, 6))):
            materials.append(
                {
                    **template["materials"][0],
                    "code": f"M{n + 1:02d}",
                    "name": material,
                    "required": True,
                    "deferrable": n == 1,
                    "pledgeable": False,
                }
            )
            materials[-1].pop("note", None)
        data = {
            **template,
            "code": f"{region.code}-{rng.choice(CATEGORIES)}-{serial:04d}",
            "name": name,
            "department": region.name + rng.choice(DEPARTMENTS),
            "handling_region": region.code,
            "modes": rng.choice(MODE_SETS),
            "materials": materials,
            "legal_limit_days": legal,
            "promised_limit_days": max(1, legal // rng.choice([1, 2, 3, 4])),
            "inspection": {"required": False, "points": []},
            "form_fields": [],
        }
        for optional in ("conditions", "note", "phone"):
            data.pop(optional, None)
        items.append(Item.from_dict(data))
    return items


# -- the database -----------------------------------------------------------------------------


async def _pg_admin(url: str, sql: str) -> None:
    conn = await pg_connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def db_size(db: Database, path: Path | None) -> dict[str, Any]:
    if path is not None:

        def measure() -> dict[str, Any]:
            conn = sqlite3.connect(path)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                sizes: dict[str, Any] = {"file_mib": round(path.stat().st_size / 2**20, 1)}
                try:
                    rows = conn.execute(
                        "SELECT name, SUM(pgsize) AS size FROM dbstat GROUP BY name "
                        "ORDER BY size DESC LIMIT 12"
                    ).fetchall()
                    sizes["objects_mib"] = {n: round(sz / 2**20, 1) for n, sz in rows}
                except sqlite3.Error:  # dbstat is optional in SQLite builds
                    pass
                return sizes
            finally:
                conn.close()

        return await asyncio.to_thread(measure)
    async with db.read() as conn:
        total = (await conn.execute(text("SELECT pg_database_size(current_database())"))).scalar()
        rows = (
            await conn.execute(
                text(
                    "SELECT c.relname AS name, pg_relation_size(c.oid) AS size FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' ORDER BY size DESC LIMIT 12"
                )
            )
        ).all()
    return {
        "database_mib": round(int(total or 0) / 2**20, 1),
        "objects_mib": {r.name: round(r.size / 2**20, 1) for r in rows},
    }


# -- the queries ------------------------------------------------------------------------------


def _substring(rng: random.Random, value: str, length: int) -> str:
    clean = "".join(ch for ch in value if ch.isalnum())
    if len(clean) <= length:
        return clean
    start = rng.randrange(0, len(clean) - length + 1)
    return clean[start : start + length]


def make_queries(
    rng: random.Random, regions: list[Region], samples: list[Item], count: int
) -> list[tuple[str, SearchQuery]]:
    kinds: list[tuple[str, Callable[[], SearchQuery]]] = [
        ("name_2", lambda: SearchQuery(text=_substring(rng, rng.choice(samples).name, 2))),
        ("name_3", lambda: SearchQuery(text=_substring(rng, rng.choice(samples).name, 3))),
        ("name_4", lambda: SearchQuery(text=_substring(rng, rng.choice(samples).name, 4))),
        ("name_1", lambda: SearchQuery(text=_substring(rng, rng.choice(samples).name, 1))),
        ("code", lambda: SearchQuery(text=rng.choice(samples).code)),
        ("code_prefix", lambda: SearchQuery(text=rng.choice(samples).code[:9])),
        ("department", lambda: SearchQuery(text=rng.choice(samples).department)),
        ("department_kind", lambda: SearchQuery(text=rng.choice(DEPARTMENTS))),
        ("region_name", lambda: SearchQuery(text=rng.choice(regions).name)),
        (
            "province_filter",
            lambda: SearchQuery(
                text=_substring(rng, rng.choice(samples).name, 2),
                province=rng.choice(regions).code[:2],
            ),
        ),
        (
            "region_filter",
            lambda: SearchQuery(
                text=_substring(rng, rng.choice(samples).name, 2),
                region=rng.choice(regions).name[:2],
            ),
        ),
        (
            "mode_filter",
            lambda: SearchQuery(
                text=_substring(rng, rng.choice(samples).name, 3),
                mode=rng.choice(["joint", "online"]),
            ),
        ),
        ("later_page", lambda: SearchQuery(text=rng.choice(ACTIONS), page=rng.randint(2, 20))),
        ("browse", lambda: SearchQuery(page=rng.randint(1, 50))),
    ]
    return [(kind, make()) for kind, make in (rng.choice(kinds) for _ in range(count))]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {
        "n": len(ordered),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


# -- the run ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="tongban-bench-catalog-"))
    pg_name: str | None = None
    sqlite_path: Path | None = None
    if args.database == "postgres":
        pg_name = f"tb_bench_catalog_{uuid.uuid4().hex[:8]}"
        await _pg_admin(args.pg_url, f'CREATE DATABASE "{pg_name}"')
        url = make_url(args.pg_url).set(database=pg_name).render_as_string(hide_password=False)
    else:
        sqlite_path = tmp / "catalog.db"
        url = f"sqlite+aiosqlite:///{sqlite_path}"
    db = Database(url)
    report: dict[str, Any] = {
        "parameters": {
            "regions": args.regions,
            "items_per_region": args.items,
            "database": args.database,
            "queries": args.queries,
            "seed": args.seed,
        },
        "machine": procstat.machine_info(REPO),
        "target_p95_ms": TARGET_P95_MS,
    }
    try:
        await upgrade(db)
        vocab = demo_vocabulary()
        check_item(vocab[2][0], "template")
        own = parse_catalog(OWN, (DEMO / f"{OWN}.toml").read_text(encoding="utf-8"))
        await load_catalog(db, OWN, own, region_name="邵阳县")
        regions = make_regions(args.regions, rng)
        print(f"storing {args.regions} regions × {args.items} items ({args.database}) ...")
        started = time.perf_counter()
        store_ms: list[float] = []
        generate_s = 0.0
        samples: list[Item] = []
        now = time.time()
        for n, region in enumerate(regions):
            t0 = time.perf_counter()
            items = make_items(region, args.items, rng, vocab)
            kid = f"{region.code}:bench"
            token = sign_catalog(region.code, items, now, generate_private_key(), kid)
            generate_s += time.perf_counter() - t0
            catalog = Catalog(region=region.code, iat=int(now), items=tuple(items), signed_by=kid)
            t1 = time.perf_counter()
            await store_partner_catalog(
                db, token.encode("ascii"), catalog, now, region_name=region.name
            )
            store_ms.append((time.perf_counter() - t1) * 1000)
            samples.extend(rng.sample(items, 2))
            if (n + 1) % 500 == 0:
                print(f"  {n + 1} regions, {time.perf_counter() - started:.0f} s")
        total_s = time.perf_counter() - started
        analyze_t = time.perf_counter()
        async with db.write() as conn:
            if args.database == "postgres":
                pass
            else:
                await conn.exec_driver_sql("ANALYZE")
        if args.database == "postgres":
            await _pg_admin(url, "VACUUM ANALYZE")
        report["load"] = {
            "items": args.regions * args.items + len(own),
            "total_s": round(total_s, 1),
            "generate_and_sign_s": round(generate_s, 1),
            "store_and_index_s": round(sum(store_ms) / 1000, 1),
            "store_per_region_ms": percentiles(store_ms),
            "analyze_s": round(time.perf_counter() - analyze_t, 1),
        }
        report["size"] = await db_size(db, sqlite_path)
        print(json.dumps({"load": report["load"], "size": report["size"]}, ensure_ascii=False))
        await time_queries(db, rng, regions, samples, args.queries, report)
    finally:
        await db.dispose()
        if pg_name is not None and not args.keep:
            await _pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        if args.keep:
            print(f"kept: {tmp}" + (f", database {pg_name}" if pg_name else ""))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


async def time_queries(
    db: Database,
    rng: random.Random,
    regions: list[Any],
    samples: list[Any],
    count: int,
    report: dict[str, Any],
) -> None:
    """Time ``count`` searches of the mix; figures into ``report["search"]``."""
    report["load_average_before_queries"] = os.getloadavg()
    queries = make_queries(rng, regions, samples, count)
    for _kind, query in queries[:20]:  # warm the caches
        await search(db, query)
    by_kind: dict[str, list[float]] = {}
    every: list[float] = []
    results: dict[str, list[int]] = {}
    for kind, query in queries:
        t0 = time.perf_counter()
        page = await search(db, query)
        ms = (time.perf_counter() - t0) * 1000
        by_kind.setdefault(kind, []).append(ms)
        results.setdefault(kind, []).append(page.total)
        every.append(ms)
    report["load_average_after_queries"] = os.getloadavg()
    overall = percentiles(every)
    report["search"] = {
        "overall": overall,
        "by_kind": {
            k: {**percentiles(v), "median_total": int(statistics.median(results[k]))}
            for k, v in sorted(by_kind.items())
        },
        "meets_target": overall["p95_ms"] < TARGET_P95_MS,
    }
    print(f"\nsearch over {len(every)} queries: {overall}")
    print(f"{'kind':<18}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'hits':>7}")
    for kind, fig in report["search"]["by_kind"].items():
        print(
            f"{kind:<18}{fig['n']:>5}{fig['p50_ms']:>9}{fig['p95_ms']:>9}"
            f"{fig['p99_ms']:>9}{fig['max_ms']:>9}{fig['median_total']:>7}"
        )
    print(f"target p95 < {TARGET_P95_MS:.0f} ms: {report['search']['meets_target']}")


async def run_existing(args: argparse.Namespace) -> dict[str, Any]:
    """Only time the searches, on a database a run kept (``--keep``)."""
    rng = random.Random(args.seed)
    db = Database(args.existing)
    report: dict[str, Any] = {
        "parameters": {"existing": True, "queries": args.queries, "seed": args.seed},
        "machine": procstat.machine_info(REPO),
        "target_p95_ms": TARGET_P95_MS,
    }
    try:
        async with db.read() as conn:
            samples = (
                await conn.execute(
                    text(
                        "SELECT code, name, department FROM catalog_entries WHERE NOT own "
                        "ORDER BY id LIMIT 6000"
                    )
                )
            ).all()
            regions = (
                await conn.execute(text("SELECT region AS code, name FROM catalog_regions"))
            ).all()
            report["parameters"]["items"] = (
                await conn.execute(text("SELECT count(*) FROM catalog_entries"))
            ).scalar()
        picked = rng.sample(list(samples), min(len(samples), 6000))
        await time_queries(db, rng, list(regions), picked, args.queries, report)
    finally:
        await db.dispose()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions", type=int, default=3000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--existing", metavar="URL", help="only time the searches on this kept database"
    )
    args = parser.parse_args(argv)
    report = asyncio.run(run_existing(args) if args.existing else run(args))
    out = args.out or REPO / "bench" / "results" / f"catalog-{args.database}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0 if report["search"]["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
