"""The demo cases, one story each: how a case in every state of the lifecycle is made, through
the API like the people who handle it would. Two stories are backdated (全程网办 applications of
some days ago, to show an overdue case and one in its warning lead): they never leave their
node, so no envelope carries the old time; the handling node's case service runs on a shifted
clock for the two calls that make each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from node.appkeys import CASES
from node.clock import CHINA, today_in_china
from node.demo.client import HOP_TIMEOUT, DemoError, Seeder, days_from_today
from node.demo.people import company, person

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


def _tomorrow_at(hour: int) -> str:
    moment = datetime.now(CHINA) + timedelta(days=1)
    return moment.replace(hour=hour, minute=0, second=0, microsecond=0).isoformat()


async def _overdue(s: Seeder) -> dict[str, Any]:
    """全程网办 of twelve days ago at 衡阳市, accepted the same day, promised in 5 working days."""
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
            "planned_start": days_from_today(20),
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
