"""Applicants' personal data at rest (docs/security.md): sealed in the case rows of both nodes,
masked wherever staff look, in full only through the recorded reveal; query codes kept as an
HMAC under the node's index key."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from node.cases.models import cases
from node.cases.personal import QUERY_PREFIX
from node.storage.sealing import PREFIX, SealingError, load_sealer
from tests.support.api import ApiClient
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for, start_regions
from tests.support.waiting import wait_until

APPLICANT = {
    "kind": "person",
    "name": "周敏",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13973900003",
}


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    nodes = await start_regions(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    yield nodes
    for node in nodes:
        await node.stop()


async def _raw(node: RunningNode, case_no: str) -> tuple[object, ...]:
    async with node.db.read() as conn:
        return tuple((await conn.execute(select(cases).where(cases.c.case_no == case_no))).one())


async def test_id_numbers_and_phones_are_sealed_on_both_nodes(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = pair
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(shaoyang.url, http).login("clerk")
        item = await clerk.ok("GET", "/api/v1/catalog/430400-XK-0001")
        created = await clerk.ok(
            "POST",
            "/api/v1/cases",
            {
                "item_code": "430400-XK-0001",
                "mode": "proxy",
                "applicant": APPLICANT,
                "form": form_for(item),
                "materials": await materials_for(clerk, item),
                "identity_verified": True,
                "delivery": {"method": "window", "address": None},
            },
            status=201,
        )
        case_no, code = created["case"]["case_no"], created["query_code"]
        approver = await ApiClient(hengyang.url, http).login("approver")

        async def arrived() -> bool:
            return bool((await approver.ok("GET", f"/api/v1/cases?q={case_no}"))["cases"])

        await wait_until(arrived)
        [remote] = (await approver.ok("GET", f"/api/v1/cases?q={case_no}"))["cases"]
        detail = await approver.ok("GET", f"/api/v1/cases/{remote['id']}")
        assert detail["applicant"]["id_number"] == "110***********002X"
        assert detail["applicant"]["phone"] == "139****0003"
        revealed = await approver.act(remote["id"], "reveal", {"reason": "verify"})
        assert revealed["revealed"] == {
            "id_number": APPLICANT["id_number"],
            "phone": APPLICANT["phone"],
        }
        # The citizen's query code still opens the case at the window's node.
        citizen = ApiClient(shaoyang.url, http)
        await citizen.ok("GET", f"/api/v1/public/cases/{case_no}?code={code}")
    for node in (shaoyang, hengyang):
        row = await _raw(node, case_no)
        text = repr(row)
        assert APPLICANT["id_number"] not in text and APPLICANT["phone"] not in text
        async with node.db.read() as conn:
            stored = (
                await conn.execute(
                    select(cases.c.applicant_id_number, cases.c.query_hash).where(
                        cases.c.case_no == case_no
                    )
                )
            ).one()
        assert stored.applicant_id_number.startswith(PREFIX)
        sealer = load_sealer(node.config.dir)
        assert (
            sealer.open(stored.applicant_id_number, "cases.applicant_id_number")
            == (APPLICANT["id_number"])
        )
        # A sealed value moved to another column does not open.
        with pytest.raises(SealingError):
            sealer.open(stored.applicant_id_number, "cases.applicant_phone")
    # The window's node keeps the query code as an HMAC, not as a hash six digits undo.
    async with shaoyang.db.read() as conn:
        kept = (
            await conn.execute(select(cases.c.query_hash).where(cases.c.case_no == case_no))
        ).scalar_one()
    assert kept.startswith(QUERY_PREFIX)
    assert kept != hashlib.sha256(f"{case_no}:{code}".encode()).hexdigest()
    guesses = {hashlib.sha256(f"{case_no}:{n:06d}".encode()).hexdigest() for n in range(2000)}
    assert kept not in guesses
