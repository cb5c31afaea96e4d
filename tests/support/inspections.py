"""A case that needs a video inspection, walked to `inspection` across two real nodes:
邵阳县 (430523) decides item 430523-XK-0001 and inspects; 衡阳市 (430400) is the window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.support.api import ApiClient
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for
from tests.support.waiting import wait_until

ITEM = "430523-XK-0001"  # 农作物种子生产经营许可证变更, inspection required
APPLICANT = {
    "kind": "org",
    "name": "衡阳市丰禾种业有限公司",
    "id_type": "unified_social_credit_code",
    "id_number": "91430523MA4L0X1T2N",
    "phone": "13807340001",
}
CHINA = timezone(timedelta(hours=8))


@dataclass
class InspectionCase:
    case_no: str
    handling_id: int  # the case id on 邵阳县
    receiving_id: int  # the case id on 衡阳市
    schedule: dict[str, Any]  # details.inspection on 邵阳县 (with the join token)

    @property
    def session_id(self) -> str:
        return str(self.schedule["session_id"])

    @property
    def token(self) -> str:
        return str(self.schedule["join_token"])


async def find(client: ApiClient, case_no: str) -> dict[str, Any] | None:
    listing = await client.ok("GET", f"/api/v1/cases?q={case_no}")
    matches = [c for c in listing["cases"] if c["case_no"] == case_no]
    return await client.ok("GET", f"/api/v1/cases/{matches[0]['id']}") if matches else None


async def until(client: ApiClient, case_no: str, check: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        case = await find(client, case_no)
        seen["case"] = case
        return case is not None and bool(check(case))

    await wait_until(reached)
    return seen["case"]


def ws_url(node: RunningNode, session_id: str) -> str:
    return node.url.replace("http://", "ws://") + f"/inspection/{session_id}/ws"


async def accepted_case(clerk: ApiClient, approver: ApiClient) -> tuple[str, int, int]:
    case_no, _code, handling_id, receiving_id = await accepted_case_with_code(clerk, approver)
    return case_no, handling_id, receiving_id


async def accepted_case_with_code(
    clerk: ApiClient, approver: ApiClient
) -> tuple[str, str, int, int]:
    """Like ``accepted_case``, with the citizen's query code (for the /query pages)."""
    item = await clerk.ok("GET", f"/api/v1/catalog/{ITEM}")
    created = await clerk.ok(
        "POST",
        "/api/v1/cases",
        {
            "item_code": ITEM,
            "mode": "proxy",
            "applicant": APPLICANT,
            "form": {
                "license_no": "D(湘邵)农种许字(2024)第0012号",
                "change_type": "生产地点",
                "change_detail": "生产地点由塘渡口镇变更为白仓镇",
                "crop_species": "水稻",
            },
            "materials": await materials_for(clerk, item),
            "identity_verified": True,
            "delivery": {"method": "window", "address": None},
        },
        status=201,
    )
    case_no = created["case"]["case_no"]
    incoming = await until(approver, case_no, lambda c: c["status"] == "forwarded")
    await approver.act(incoming["id"], "accept", {"note": "材料齐全"})
    return case_no, created["query_code"], incoming["id"], created["case"]["id"]


async def schedule(
    approver: ApiClient,
    clerk: ApiClient,
    case_no: str,
    handling_id: int,
    receiving_id: int,
    **extra: Any,
) -> InspectionCase:
    when = datetime.now(CHINA) + timedelta(minutes=1)
    await approver.act(
        handling_id,
        "schedule_inspection",
        {
            "scheduled_at": when.isoformat(timespec="seconds"),
            "site_address": "湖南省邵阳县塘渡口镇种业园 8 号",
            "inspectors": ["inspector"],
            "duration_minutes": 30,
            **extra,
        },
    )
    handled = await approver.ok("GET", f"/api/v1/cases/{handling_id}")
    # The window's node learns of it (with the join link to hand over).
    await until(clerk, case_no, lambda c: (c["details"].get("inspection") or {}).get("join_token"))
    return InspectionCase(case_no, handling_id, receiving_id, handled["details"]["inspection"])
