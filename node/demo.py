"""`tongban demo`: three partnered regions on one machine (docs/operations.md), in one command.

Each region gets the demo catalogue (``node/demo_catalog/<region>.toml``: the sample items plus
more from real practice), staff with Chinese display names (password ``tongban-demo``), and —
while the three nodes run — demo cases in every state of the lifecycle, made through the staff
and public API like a window clerk, an approver and a citizen would: envelopes really travel
between the nodes and every case's audit chain is real. The cases made are listed in
``DIR/demo-cases.json`` (with their query codes: demo data only), so a second start adds none.

Two cases are backdated (全程网办 applications of some days ago, to show an overdue case and one
in its warning lead): they never leave their node, so no envelope carries the old time; the
handling node's case service runs on a shifted clock for the two calls that make each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from node.config import CONFIG_FILE, NodeConfig
from node.identity.devprovider import LABEL as PROVIDER_LABEL
from node.identity.devprovider import DevProvider, Person, RunningProvider, serve
from node.logging_setup import configure_logging
from node.provisioning import init_node, link_all

#: (region, name, port offset) of the demo regions.
DEMO_REGIONS = (
    ("430400", "衡阳市", 0),
    ("430523", "邵阳县", 1),
    ("370500", "东营市", 2),
)
DEMO_PASSWORD = "tongban-demo"
#: Items of the demo catalogue offered 全程网办, shown in the banner as /apply/{code}.
DEMO_ONLINE_ITEMS = {"430400": "430400-GG-0001", "370500": "370500-QR-0001"}
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
CATALOG_DIR = Path(__file__).parent / "demo_catalog"
SEED_FILE = "demo-cases.json"
#: How long the demo waits for a message to reach the other node before it gives up.
HOP_TIMEOUT = 60.0

Say = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


# -- making the regions ----------------------------------------------------------------------


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
    from node.accounts.service import UserExists, create_user, list_users
    from node.catalog.loading import load_catalog_file
    from node.storage.database import Database

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


# -- talking to the nodes like people do -----------------------------------------------------


class DemoError(Exception):
    pass


def _pdf(text: str) -> bytes:
    """A small valid PDF whose bytes differ per ``text``."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def resident_id(area: str, born: str, serial: str) -> str:
    """A well-formed 居民身份证号码 (GB 11643 check digit) for a made-up person."""
    from protocol.identifiers import resident_id_check_digit

    first = area + born + serial
    return first + resident_id_check_digit(first)


def credit_code(area: str, body: str) -> str:
    """A well-formed 统一社会信用代码 (GB 32100 check character) for a made-up company."""
    from protocol.identifiers import credit_code_check_char

    first = "91" + area + body
    return first + credit_code_check_char(first)


#: Whom the demo's identity provider offers on its login page: the applicants of the demo's
#: 全程网办 stories first (their cases are theirs), then anyone for a new application.
DEMO_PEOPLE_SOURCE = (
    ("邱孝芳", "430405", "19860317", "042"),
    ("孙晓雯", "370502", "19990612", "026"),
    ("曾国华", "430523", "19780912", "035"),
    ("刘洋", "430405", "19920214", "017"),
)


def demo_people() -> tuple[Person, ...]:
    return tuple(Person(name, resident_id(*rest)) for name, *rest in DEMO_PEOPLE_SOURCE)


def person(name: str, area: str, born: str, serial: str, phone: str) -> dict[str, Any]:
    return {
        "kind": "person",
        "name": name,
        "id_type": "resident_id",
        "id_number": resident_id(area, born, serial),
        "phone": phone,
    }


def company(name: str, area: str, body: str, phone: str) -> dict[str, Any]:
    return {
        "kind": "org",
        "name": name,
        "id_type": "unified_social_credit_code",
        "id_number": credit_code(area, body),
        "phone": phone,
    }


@dataclass
class Seeder:
    """Makes the demo cases through the nodes' API while they run."""

    http: aiohttp.ClientSession
    urls: dict[str, str]
    apps: dict[str, web.Application]
    #: The demo's identity provider: vouches for the citizens of the 全程网办 stories.
    identity: DevProvider | None = None
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    _items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    async def token(self, region: str, user: str) -> str:
        key = (region, user)
        if key not in self._tokens:
            body = await self.call(
                region, None, "POST", "/api/v1/login", {"username": user, "password": DEMO_PASSWORD}
            )
            self._tokens[key] = body["token"]
        return self._tokens[key]

    async def call(
        self,
        region: str,
        user: str | None,
        method: str,
        path: str,
        payload: Any = None,
        *,
        expect: int = 200,
        bearer: str | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {await self.token(region, user)}"} if user else {}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        async with self.http.request(
            method, self.urls[region] + path, json=payload, headers=headers
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status != expect:
                raise DemoError(f"{region} {method} {path}: {resp.status} {body}")
            return body

    async def upload(self, region: str, user: str | None, name: str) -> str:
        path = "/api/v1/uploads" if user else "/api/v1/public/uploads"
        headers = {"X-File-Name": quote(name + ".pdf"), "Content-Type": "application/octet-stream"}
        if user:
            headers["Authorization"] = f"Bearer {await self.token(region, user)}"
        async with self.http.post(
            self.urls[region] + path, data=_pdf(f"{name} {time.time()}"), headers=headers
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 201:
                raise DemoError(f"{region} upload: {resp.status} {body}")
            return str(body["sha256"])

    async def item(self, region: str, code: str) -> dict[str, Any]:
        if (region, code) not in self._items:
            self._items[(region, code)] = await self.call(
                region, None, "GET", f"/api/v1/catalog/{code}"
            )
        return self._items[(region, code)]

    async def materials(
        self, region: str, user: str | None, item: dict[str, Any], *, defer: bool = False
    ) -> list[dict[str, Any]]:
        """Every required material: uploaded scans, 告知承诺 where allowed, 容缺 if ``defer``."""
        out = []
        for material in item["materials"]:
            if not material["required"]:
                continue
            if defer and material.get("deferrable"):
                out.append({"code": material["code"], "status": "deferred", "blob": None})
            elif material.get("pledgeable"):
                out.append({"code": material["code"], "status": "pledged", "blob": None})
            else:
                blob = await self.upload(region, user, material["name"][:40])
                out.append({"code": material["code"], "status": "provided", "blob": blob})
        return out

    @staticmethod
    def form(item: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        """The item's form with ``given`` values; other required fields get plain defaults."""
        defaults = {"text": "见申请材料", "number": 1, "date": _day(10)}
        form: dict[str, Any] = {}
        for spec in item["form_fields"]:
            name = spec["name"]
            if name in given:
                form[name] = given[name]
            elif spec["required"]:
                form[name] = (
                    spec["options"][0] if spec["type"] == "select" else defaults[spec["type"]]
                )
        return form

    async def apply(
        self,
        receiving: str,
        code: str,
        applicant: dict[str, Any],
        form: dict[str, Any],
        *,
        mail: str | None = None,
        defer: bool = False,
    ) -> tuple[dict[str, Any], str]:
        """A window clerk of ``receiving`` takes an application (异地代收代办)."""
        item = await self.item(receiving, code)
        body = await self.call(
            receiving,
            "clerk",
            "POST",
            "/api/v1/cases",
            {
                "item_code": code,
                "mode": "proxy",
                "applicant": applicant,
                "form": self.form(item, form),
                "materials": await self.materials(receiving, "clerk", item, defer=defer),
                "identity_verified": True,
                "delivery": {"method": "mail", "address": mail}
                if mail
                else {"method": "window", "address": None},
            },
            expect=201,
        )
        return body["case"], body["query_code"]

    async def apply_online(
        self, region: str, code: str, applicant: dict[str, Any], form: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """全程网办 on the handling region's own public API, as the citizen the demo's identity
        provider vouches for (an ID token for this region's client id)."""
        item = await self.item(region, code)
        if self.identity is None:
            raise DemoError("全程网办 needs the demo's identity provider")
        citizen = Person(applicant["name"], applicant["id_number"])
        token = self.identity.issue(citizen, client_id(region))
        body = await self.call(
            region,
            None,
            "POST",
            "/api/v1/public/applications",
            {
                "item_code": code,
                "applicant": applicant,
                "form": self.form(item, form),
                "materials": await self.materials(region, None, item),
                "delivery": {"method": "window", "address": None},
            },
            expect=201,
            bearer=token,
        )
        return body["case"], body["query_code"]

    async def find(self, region: str, case_no: str) -> dict[str, Any] | None:
        listing = await self.call(region, "supervisor", "GET", f"/api/v1/cases?q={case_no}")
        ids = [c["id"] for c in listing["cases"] if c["case_no"] == case_no]
        if not ids:
            return None
        return await self.call(region, "supervisor", "GET", f"/api/v1/cases/{ids[0]}")

    async def until(self, region: str, case_no: str, status: str) -> dict[str, Any]:
        """The case on ``region`` once it has ``status`` (a message may still be on its way)."""
        deadline = time.monotonic() + HOP_TIMEOUT
        case: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            case = await self.find(region, case_no)
            if case is not None and case["status"] == status:
                return case
            await asyncio.sleep(0.1)
        seen = case["status"] if case else "absent"
        raise DemoError(f"{case_no} on {region}: expected {status}, still {seen}")

    async def act(
        self, region: str, user: str, case_id: int, action: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            region, user, "POST", f"/api/v1/cases/{case_id}/actions/{action}", payload
        )
        return result

    async def accept(self, receiving: str, handling: str, case_no: str, note: str) -> int:
        incoming = await self.until(handling, case_no, "forwarded")
        await self.act(handling, "approver", incoming["id"], "accept", {"note": note})
        await self.until(receiving, case_no, "accepted")
        return int(incoming["id"])

    async def approve(
        self, receiving: str, handling: str, case_id: int, case_no: str, doc: str, cert: str
    ) -> int:
        blob = await self.upload(handling, "approver", f"{doc} {cert}")
        await self.act(
            handling,
            "approver",
            case_id,
            "decide",
            {
                "outcome": "approved",
                "certificate_no": cert,
                "documents": [{"blob": blob, "name": doc}],
            },
        )
        return int((await self.until(receiving, case_no, "approved"))["id"])


def _day(days: int) -> str:
    return (datetime.now() + timedelta(days=days)).date().isoformat()


def _tomorrow_at(hour: int) -> str:
    from node.clock import CHINA

    moment = datetime.now(CHINA) + timedelta(days=1)
    return moment.replace(hour=hour, minute=0, second=0, microsecond=0).isoformat()


# -- the demo cases --------------------------------------------------------------------------

HY, SY, DY = "430400", "430523", "370500"


@dataclass(frozen=True)
class Story:
    key: str
    title: str
    run: Callable[[Seeder], Awaitable[dict[str, Any]]]


def _record(case: dict[str, Any], code: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "case_no": case["case_no"],
        "query_code": code,
        "receiving": case["receiving_region"],
        "handling": case["handling_region"],
        "mode": case["mode"],
        "status": status,
        **extra,
    }


async def _overdue(s: Seeder) -> dict[str, Any]:
    """全程网办 of twelve days ago at 衡阳市, accepted the same day, promised in 5 working days."""
    from node.appkeys import CASES

    service = s.apps[HY][CASES]
    real = service.clock
    shift = 12 * 86400.0
    service.clock = lambda: real() - shift
    try:
        case, code = await s.apply_online(
            HY,
            "430400-GG-0001",
            person("邱孝芳", "430405", "19860317", "042", "13907340021"),
            {"house_address": "衡阳市蒸湘区船山大道88号 3栋1202", "contract_no": "HY2026-103388"},
        )
        await s.act(HY, "approver", case["id"], "accept", {"note": "材料齐全，予以受理"})
    finally:
        service.clock = real
    return _record(case, code, "accepted", time_status="overdue")


async def _received(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply_online(
        DY,
        "370500-QR-0001",
        person("孙晓雯", "370502", "19990612", "026", "15954600312"),
        {"certificate_type": "小学", "subject": "语文"},
    )
    return _record(case, code, "received")


async def _forwarded(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        SY,
        "430400-XK-0002",
        company("衡阳市悦容美容美发店", "430405", "MA4T2K8Q3", "13873400156"),
        {"business_name": "悦容美容美发", "address": "衡阳市石鼓区中山北路66号"},
    )
    await s.until(HY, case["case_no"], "forwarded")
    return _record(case, code, "forwarded")


async def _supplement(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        SY,
        "430400-XK-0001",
        company("邵阳县宏达建设有限公司", "430523", "MA4L0X1T2", "13807390001"),
        {
            "project_name": "宏达商业广场",
            "project_code": "2611-430405-04-01-512233",
            "construction_stage": "土方开挖与基坑支护",
            "floor_area_m2": 23800,
            "contract_price_wan": 6800,
            "builder": "湖南宏达建设工程有限公司",
            "planned_start": _day(20),
        },
        mail="湖南省邵阳县塘渡口镇建设路1号",
    )
    incoming = await s.until(HY, case["case_no"], "forwarded")
    await s.act(
        HY,
        "approver",
        incoming["id"],
        "request_supplement",
        {
            "items": [
                {
                    "material_code": "M06",
                    "name": "危险性较大的分部分项工程清单及安全管理措施",
                    "requirement": "请补充基坑支护专项施工方案及专家论证意见（加盖公章）",
                },
                {
                    "name": "施工现场安全生产条件承诺书",
                    "requirement": "按本局格式签署，法定代表人签字并加盖公章",
                },
            ]
        },
    )
    await s.until(SY, case["case_no"], "supplement_pending")
    return _record(case, code, "supplement_pending")


async def _accepted(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        HY,
        "370500-XK-0001",
        company("衡阳顺通物流有限公司", "430408", "MA4QH1R7W", "13974700382"),
        {"operator_name": "衡阳顺通物流有限公司", "vehicle_count": 12},
        defer=True,
    )
    await s.accept(HY, DY, case["case_no"], "材料齐全，予以受理；容缺材料请按期补交")
    return _record(case, code, "accepted")


async def _not_accepted(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        DY,
        "430523-XK-0002",
        person("杨胜男", "370502", "19910805", "063", "13805460077"),
        {"business_name": "胜男小吃店"},
    )
    incoming = await s.until(SY, case["case_no"], "forwarded")
    await s.act(
        SY,
        "approver",
        incoming["id"],
        "not_accept",
        {
            "reason": (
                "经营场所位于东营市东营区，不属于邵阳县管辖，请向经营场所所在地市场监管部门申请"
            ),
            "legal_basis": "《食品经营许可和备案管理办法》第十五条",
        },
    )
    await s.until(DY, case["case_no"], "not_accepted")
    return _record(case, code, "not_accepted")


async def _inspection(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        HY,
        "370500-XK-0002",
        company("东营丰彩农业科技有限公司", "370521", "MA3N7F5B2", "13954600219"),
        {
            "license_no": "C(鲁东)农种许字(2023)第0007号",
            "new_address": "东营市垦利区胜坨镇丰彩路9号",
        },
    )
    case_id = await s.accept(HY, DY, case["case_no"], "予以受理，安排视频勘验")
    await s.act(
        DY,
        "inspector",
        case_id,
        "schedule_inspection",
        {"scheduled_at": _tomorrow_at(10), "site_address": "东营市垦利区胜坨镇丰彩路9号"},
    )
    await s.until(HY, case["case_no"], "inspection")
    return _record(case, code, "inspection")


async def _approved(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        DY,
        "430400-DJ-0001",
        person("谢超", "370502", "19820214", "015", "13605460188"),
        {},
    )
    case_id = await s.accept(DY, HY, case["case_no"], "予以受理")
    await s.approve(
        DY, HY, case_id, case["case_no"], "不动产权证书", "湘(2026)衡阳市不动产权第0031288号"
    )
    return _record(case, code, "approved")


async def _denied(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        HY,
        "430523-GG-0001",
        company("衡阳酷客智能科技有限公司", "430407", "MA4R9C3D5", "13707340451"),
        {
            "project_name": "智能家居生产线",
            "policy_clause": "第12条 设备投资补助",
            "amount_wan": 80,
        },
    )
    case_id = await s.accept(HY, SY, case["case_no"], "予以受理")
    await s.act(
        SY,
        "approver",
        case_id,
        "decide",
        {
            "outcome": "denied",
            "reason": (
                "项目尚未达到投资合同约定的投产进度，暂不符合第12条兑现条件；达标后可再次申请"
            ),
        },
    )
    await s.until(HY, case["case_no"], "denied")
    return _record(case, code, "denied")


async def _dispatched(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        SY,
        "370500-DJ-0001",
        person("李红梅", "430523", "19880923", "048", "13786900235"),
        {
            "company_name": "东营红梅农产品贸易有限公司",
            "registered_capital_wan": 50,
            "address": "东营市东营区府前街126号",
            "business_scope": "农产品销售；食品销售",
            "legal_representative": "李红梅",
        },
        mail="湖南省邵阳县塘渡口镇宝庆路18号",
    )
    case_id = await s.accept(SY, DY, case["case_no"], "予以受理")
    here = await s.approve(SY, DY, case_id, case["case_no"], "营业执照", "91370502MA3RDEMO01")
    await s.act(
        SY,
        "clerk",
        here,
        "dispatch",
        {"method": "mail", "courier": "中国邮政EMS", "tracking_no": "EA202611270CN"},
    )
    await s.until(DY, case["case_no"], "dispatched")
    return _record(case, code, "dispatched")


async def _delivered(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        SY,
        "430400-GG-0001",
        person("钟冶乔", "430523", "19900110", "031", "13607390442"),
        {"house_address": "衡阳市雁峰区湘江南路12号 2栋803", "contract_no": "HY2026-100921"},
    )
    case_id = await s.accept(SY, HY, case["case_no"], "予以受理")
    here = await s.approve(SY, HY, case_id, case["case_no"], "购房补贴核定通知书", "HYBT2026-0921")
    await s.act(SY, "clerk", here, "dispatch", {"method": "window"})
    await s.act(SY, "clerk", here, "deliver", {"recipient": "钟冶乔"})
    await s.act(
        SY,
        "clerk",
        here,
        "rate",
        {"level": 5, "stage": "decide", "channel": 1, "comment": "一站式服务很贴心很便利"},
    )
    await s.until(HY, case["case_no"], "delivered")
    return _record(case, code, "delivered", rating=5)


async def _withdrawn(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        HY,
        "370500-DJ-0002",
        company("衡阳万达商贸有限公司", "430407", "MA4P6E2H8", "13873400973"),
        {"company_name": "衡阳万达商贸有限公司", "change_item": "住所"},
    )
    await s.until(DY, case["case_no"], "forwarded")
    await s.act(HY, "clerk", case["id"], "withdraw", {"reason": "申请人决定暂缓办理住所变更"})
    await s.until(HY, case["case_no"], "withdrawn")
    await s.until(DY, case["case_no"], "withdrawn")
    return _record(case, code, "withdrawn")


async def _bad_rating(s: Seeder) -> dict[str, Any]:
    case, code = await s.apply(
        DY,
        "430523-DJ-0002",
        person("刘志刚", "370502", "19850428", "057", "13854600361"),
        {
            "business_name": "邵阳县志刚农资店",
            "business_scope": "化肥、农药（不含危险化学品）零售",
            "address": "邵阳县塘渡口镇农贸市场12号",
        },
    )
    case_id = await s.accept(DY, SY, case["case_no"], "予以受理")
    here = await s.approve(DY, SY, case_id, case["case_no"], "营业执照", "92430523MA4DEMO02X")
    await s.act(DY, "clerk", here, "dispatch", {"method": "window"})
    await s.act(DY, "clerk", here, "deliver", {"recipient": "刘志刚"})
    # The applicant rates on the citizen page (channel 2, mobile): a 差评 opens a rectification.
    await s.call(
        DY,
        None,
        "POST",
        f"/api/v1/public/cases/{case['case_no']}/rating",
        {
            "code": code,
            "level": 2,
            "stage": "decide",
            "comment": "营业执照寄到东营窗口后没有短信通知，跑了两趟才领到",
        },
        expect=201,
    )
    deadline = time.monotonic() + HOP_TIMEOUT
    while time.monotonic() < deadline:
        board = await s.call(SY, "supervisor", "GET", "/api/v1/supervision")
        if any(r["case_no"] == case["case_no"] for r in board["open_rectifications"]):
            break
        await asyncio.sleep(0.1)
    else:
        raise DemoError("the 差评 did not open a rectification in 邵阳县")
    return _record(case, code, "delivered", rating=2, rectification="open")


#: The 预警 story's item: 邵阳县's 不动产抵押登记, offered online (3 working days).
WARNING_ITEM = "430523-DJ-0001"


async def _warning(s: Seeder) -> dict[str, Any]:
    """全程网办 at 邵阳县, accepted so many working days ago that its deadline is the next working
    day: inside its warning lead (a case accepted today is never 预警: docs/cases.md)."""
    from node.appkeys import CASES
    from node.clock import today_in_china

    service = s.apps[SY][CASES]
    item = await s.item(SY, WARNING_ITEM)
    calendar = await service.calendar()
    today = today_in_china()
    accepted_on = calendar.subtract_working_days(today, item["promised_limit_days"] - 1)
    real = service.clock
    shift = (today - accepted_on).days * 86400.0
    service.clock = lambda: real() - shift
    try:
        case, code = await s.apply_online(
            SY,
            WARNING_ITEM,
            # 全程网办 is applied for by a verified person (docs/identity.md): the mortgagor.
            person("曾国华", "430523", "19780912", "035", "13974900518"),
            {
                "property_cert_no": "湘(2025)邵阳县不动产权第0012765号",
                "mortgagee": "中国农业银行股份有限公司邵阳县支行",
                "secured_amount_wan": 120,
            },
        )
        await s.act(SY, "approver", case["id"], "accept", {"note": "予以受理（3 个工作日内办结）"})
    finally:
        service.clock = real
    return _record(case, code, "accepted", time_status="warning")


async def _bundle(s: Seeder) -> dict[str, Any]:
    parts = []
    for code, form in (
        (
            "370500-DJ-0001",
            {
                "company_name": "东营湘邵餐饮管理有限公司",
                "registered_capital_wan": 30,
                "address": "东营市东营区西四路566号",
                "business_scope": "餐饮管理；餐饮服务",
                "legal_representative": "唐建华",
            },
        ),
        ("430400-DJ-0001", {}),
    ):
        item = await s.item(SY, code)
        parts.append(
            {
                "item_code": code,
                "form": s.form(item, form),
                "materials": await s.materials(SY, "clerk", item),
            }
        )
    body = await s.call(
        SY,
        "clerk",
        "POST",
        "/api/v1/bundles",
        {
            "name": "异地开办企业并办理经营场所不动产登记一件事",
            "applicant": person("唐建华", "430523", "19790506", "019", "13974900628"),
            "parts": parts,
            "identity_verified": True,
            "delivery": {"method": "window", "address": None},
        },
        expect=201,
    )
    bundle, code = body["bundle"], body["query_code"]
    first = bundle["cases"][0]
    await s.accept(SY, first["handling_region"], first["case_no"], "予以受理")
    second = bundle["cases"][1]
    await s.until(second["handling_region"], second["case_no"], "forwarded")
    return {
        "case_no": bundle["bundle_no"],
        "query_code": code,
        "receiving": SY,
        "handling": ",".join(c["handling_region"] for c in bundle["cases"]),
        "mode": "joint",
        "status": "bundle",
        "bundle_id": bundle["id"],
        "parts": [
            {
                "case_no": first["case_no"],
                "handling": first["handling_region"],
                "status": "accepted",
            },
            {
                "case_no": second["case_no"],
                "handling": second["handling_region"],
                "status": "forwarded",
            },
        ],
    }


#: Stories made on a shifted clock: each runs alone, before the others.
BACKDATED = ("overdue", "warning")
#: In this order: the backdated cases first, while no message is on their way.
STORIES = (
    Story("overdue", "全程网办 · 购房补贴，超期未办结", _overdue),
    Story("warning", "全程网办 · 不动产抵押登记，临近时限（预警）", _warning),
    Story("received", "全程网办 · 教师资格认定，待受理", _received),
    Story("forwarded", "公共场所卫生许可，已转交待受理", _forwarded),
    Story("supplement", "分阶段施工许可，补正中（一次告知两项）", _supplement),
    Story("accepted", "道路运输经营许可，已受理（容缺）", _accepted),
    Story("not_accepted", "食品经营许可，不予受理", _not_accepted),
    Story("inspection", "种子生产经营许可证地址变更，待视频勘验", _inspection),
    Story("approved", "不动产转移登记，准予，待出件", _approved),
    Story("denied", "招商引资优惠政策兑现，不予", _denied),
    Story("dispatched", "企业开办，营业执照已邮寄", _dispatched),
    Story("delivered", "购房补贴，已送达，好评", _delivered),
    Story("withdrawn", "企业变更登记，已撤件", _withdrawn),
    Story("bad_rating", "个体工商户设立，差评待整改", _bad_rating),
    Story("bundle", "多地联办 · 开办企业+不动产登记一件事", _bundle),
)


ORDER = {story.key: index for index, story in enumerate(STORIES)}
#: Stories made at the same time (each waits on messages between the nodes most of its time).
STORIES_AT_ONCE = 5


def load_seeded(base: Path) -> dict[str, dict[str, Any]]:
    path = base / SEED_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {entry["key"]: entry for entry in data.get("cases", [])}


def _save_seeded(base: Path, seeded: dict[str, dict[str, Any]]) -> None:
    path = base / SEED_FILE
    text = json.dumps(
        {"cases": list(seeded.values())}, ensure_ascii=False, indent=2, sort_keys=True
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


async def seed(
    base: Path,
    configs: list[NodeConfig],
    apps: dict[str, web.Application],
    say: Say = _print,
    identity: DevProvider | None = None,
) -> dict[str, dict[str, Any]]:
    """Make every demo case not made before; returns all of them by story key."""
    seeded = load_seeded(base)
    todo = [story for story in STORIES if story.key not in seeded]
    if not todo:
        return seeded
    say(f"正在生成演示办件（{len(todo)} 件，经由三个节点真实流转）…")
    urls = {c.region: c.url for c in configs}
    async with aiohttp.ClientSession() as http:
        seeder = Seeder(http, urls, apps, identity)
        # Logins first (one argon2 check each), so the stories share the tokens.
        for region in urls:
            for user in ("clerk", "approver", "inspector", "supervisor"):
                await seeder.token(region, user)
        gate = asyncio.Semaphore(STORIES_AT_ONCE)

        async def run(story: Story) -> None:
            try:
                async with gate:
                    entry = await story.run(seeder)
            except (DemoError, aiohttp.ClientError, TimeoutError) as exc:
                # The regions still serve; the next start tries this story again.
                say(f"演示办件「{story.title}」未能生成：{exc}")
                return
            entry.update(key=story.key, title=story.title)
            seeded[story.key] = entry
            _save_seeded(base, seeded)

        # The backdated cases alone (their node's clock is shifted meanwhile), then the others.
        alone = [story for story in todo if story.key in BACKDATED]
        for story in alone:
            await run(story)
        await asyncio.gather(*(run(story) for story in todo if story not in alone))
    return dict(sorted(seeded.items(), key=lambda kv: ORDER.get(kv[0], 99)))


# -- serving ---------------------------------------------------------------------------------


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


async def start(base: Path, base_port: int, *, say: Say = _print) -> Demo:
    """Make (once) and serve the three regions, make the demo cases (once), print the table."""
    from node.app import create_app
    from node.appkeys import CATALOG_REFRESHER

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


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (a Chinese character takes two)."""
    import unicodedata

    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(1, width - used)


def banner(
    configs: list[NodeConfig],
    cases: dict[str, dict[str, Any]],
    provider: DevProvider | None = None,
) -> list[str]:
    """What a newcomer needs: where the regions are, who can sign in, a case to look up."""
    from node.accounts.staff import ROLE_LABELS
    from node.cases.lifecycle import STATUS_LABELS, Status

    names = {c.region: c.name for c in configs}
    urls = {c.region: c.url for c in configs}
    lines = ["", "通办 Tongban 演示 — 三个地区已启动 (three regions running)", ""]
    lines.append("  " + _pad("地区 region", 20) + "网址 URL")
    for config in configs:
        lines.append("  " + _pad(f"{config.name} {config.region}", 20) + f"{config.url}/")
    lines.append(
        "  页面 pages: /login 工作人员登录 · /window 窗口收件 · /office 办件箱 · "
        "/supervision 监督 · /query 群众办件查询 · /video 视频办"
    )
    lines += ["", "办事指南 guide（群众无需登录 no login；大厅二维码 QR sheet: /guide/qr-sheet）"]
    for config in configs:
        lines.append("  " + _pad(f"{config.name} {config.region}", 20) + f"{config.url}/guide")
    lines += ["", f"登录 logins（三个地区相同 same everywhere，密码 password: {DEMO_PASSWORD}）"]
    lines.append(
        "  "
        + _pad("用户名 user", 13)
        + _pad("岗位 role", 13)
        + "".join(_pad(c.name, 9) for c in configs)
    )
    for username in DEMO_USERS:
        lines.append(
            "  "
            + _pad(username, 13)
            + _pad(ROLE_LABELS[username], 13)
            + "".join(
                _pad(DEMO_NAMES.get(c.region, {}).get(username, username), 9) for c in configs
            )
        )
    example = cases.get("dispatched") or cases.get("supplement")
    if example:
        lines += [
            "",
            "群众查询示例 citizen lookup（无需登录 no login）:",
            f"  {urls[example['receiving']]}/query?case={example['case_no']}",
            f"  受理编号 {example['case_no']}  查询码 {example['query_code']}"
            f"  （{example['title']}，可评价）",
        ]
        other = cases.get("supplement")
        if other and other is not example:
            lines.append(
                f"  {urls[other['receiving']]}/query?case={other['case_no']}"
                f"  查询码 {other['query_code']}  （{other['title']}）"
            )
    if cases:
        lines += ["", "演示办件 demo cases（群众在收件地网址的 /query 查询）:"]
        lines.append(
            "  "
            + _pad("收件地→办理地", 24)
            + _pad("受理编号", 28)
            + _pad("状态", 18)
            + _pad("查询码", 8)
            + "说明"
        )
        for story in STORIES:
            entry = cases.get(story.key)
            if entry is None:
                continue
            handling = [names.get(h, h) for h in entry["handling"].split(",")]
            receiving = names.get(entry["receiving"], entry["receiving"])
            if entry["mode"] == "online":
                where = f"{receiving}（全程网办）"
            else:
                where = f"{receiving}→{'、'.join(handling)}"
            status = entry["status"]
            label = "多地联办" if status == "bundle" else STATUS_LABELS[Status(status)]
            overlay = {"overdue": "超期", "warning": "预警"}.get(entry.get("time_status", ""))
            if overlay:
                label += f"·{overlay}"
            lines.append(
                "  "
                + _pad(where, 24)
                + _pad(entry["case_no"], 28)
                + _pad(label, 18)
                + _pad(entry["query_code"], 8)
                + entry["title"]
            )
            for part in entry.get("parts", []):
                lines.append(
                    "  "
                    + _pad(f"  └ {names.get(part['handling'], part['handling'])}", 24)
                    + _pad(part["case_no"], 28)
                    + _pad(STATUS_LABELS[Status(part["status"])], 18)
                )
    if provider is not None:
        lines += [
            "",
            f"{PROVIDER_LABEL}:",
            f"  {provider.issuer}/  (development identity provider, demo only)",
            "  全程网办 online applications on a phone (sign in there as one of the demo people):",
        ]
        for config in configs:
            if config.region in DEMO_ONLINE_ITEMS:
                lines.append(f"  {config.url}/apply/{DEMO_ONLINE_ITEMS[config.region]}")
        for who in provider.people:
            lines.append(f"  {_pad(who.name, 8)}{who.id_number}")
    lines += ["", "Ctrl-C 退出 to stop."]
    return [line.rstrip() for line in lines]


def run_demo(base: Path, base_port: int) -> int:
    configure_logging()

    async def main() -> None:
        demo = await start(base, base_port)
        try:
            await asyncio.Event().wait()
        finally:
            await demo.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
