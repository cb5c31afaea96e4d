"""Files and the citizen's endpoints at the trust boundary (docs/security.md): a partner's
label never decides how a file is served, a refused upload is never kept, one rating per
stage with the endpoint's own channel, and strangers cannot lock an applicant out."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select, update

from node.accounts.ratelimit import RateLimiter
from node.api.citizen import lookup_allowed
from node.appkeys import CASES
from node.cases.models import ratings, uploads
from node.identity.devprovider import Person
from node.ops.janitor import remove_unclaimed
from node.storage import filetypes
from protocol.envelope import Envelope
from protocol.messages import example_body
from tests.support.api import ApiClient, pdf
from tests.support.databases import DatabaseFactory
from tests.support.forms import form_for
from tests.support.identity import CLIENT_ID, identity_toml, running_provider
from tests.support.nodes import RunningNode
from tests.support.regions import materials_for, start_regions

PERSON = {
    "kind": "person",
    "name": "周敏",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13973900003",
}
#: The ID token of PERSON (the province's identity service vouches for online applicants).
APPLICANT_TOKEN: list[str] = []
HTML = b"<!doctype html><script>fetch('/api/v1/cases')</script>"


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    async with running_provider() as idp:
        nodes = await start_regions(
            tmp_path,
            databases,
            [("430400", "衡阳市"), ("430523", "邵阳县")],
            extra_toml=identity_toml(idp.provider.issuer),
        )
        APPLICANT_TOKEN[:] = [
            idp.provider.issue(Person(PERSON["name"], PERSON["id_number"]), CLIENT_ID)
        ]
        yield nodes
        for node in nodes:
            await node.stop()


def test_a_file_is_typed_by_its_bytes_never_by_its_label() -> None:
    pdf_head = b"%PDF-1.7\n"
    assert filetypes.classify(pdf_head, "text/html", filetypes.DOCUMENTS) == filetypes.PDF
    assert filetypes.classify(HTML, "text/html", filetypes.DOCUMENTS) == filetypes.OCTET
    assert filetypes.classify(HTML, "image/svg+xml", filetypes.EVIDENCE) == filetypes.OCTET
    # Our own text types only where the evidence format has them, and only for text.
    assert filetypes.classify("笔录".encode(), "text/plain", filetypes.EVIDENCE) == "text/plain"
    assert filetypes.classify("笔录".encode(), "text/plain", filetypes.DOCUMENTS) == filetypes.OCTET
    assert filetypes.classify(b"\x00\x01", "text/plain", filetypes.EVIDENCE) == filetypes.OCTET
    # A WebM recording is evidence, not a case material.
    webm = b"\x1a\x45\xdf\xa3\x01"
    assert filetypes.classify(webm, "video/webm", filetypes.EVIDENCE) == filetypes.WEBM
    assert filetypes.classify(webm, "video/webm", filetypes.DOCUMENTS) == filetypes.OCTET
    headers = filetypes.serving_headers(filetypes.OCTET, "x.html")
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"].startswith("sandbox")
    assert filetypes.serving_headers(filetypes.PDF, "a.pdf")["Content-Disposition"].startswith(
        "inline"
    )


async def test_a_partners_html_labelled_file_is_served_as_a_download(
    pair: list[RunningNode],
) -> None:
    hengyang, _shaoyang = pair
    service = hengyang.app[CASES]  # type: ignore[index]
    digest = await hengyang.fed.blobs.put_bytes(HTML)
    body, blobs = example_body("case.submit")
    text_body = {**body, "case_no": f"430523-20261201-{uuid.uuid4().int % 10**5:05d}"}
    old = blobs[0]["sha256"]
    materials = [
        {**m, "blob": digest} if m.get("blob") == old else m for m in text_body["materials"]
    ]
    refs = [{**b, "sha256": digest, "media_type": "text/html", "size": len(HTML)} for b in blobs]
    envelope = Envelope(
        iss="430523",
        aud="430400",
        jti=str(uuid.uuid4()),
        iat=0,
        exp=0,
        typ="case.submit",
        xt=f"XT-430523-{uuid.uuid4().hex[:20]}",
        seq=1,
        body={**text_body, "materials": materials},
        blobs=refs[:1],
        kid="430523:test",
        compact=b"",
        digest="",
    )
    async with hengyang.db.write() as conn:
        await service.apply_envelope(conn, envelope)
    async with aiohttp.ClientSession() as http:
        approver = await ApiClient(hengyang.url, http).login("approver")
        async with http.get(
            f"{hengyang.url}/api/v1/files/{digest}", headers=approver._headers()
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert response.headers["Content-Disposition"].startswith("attachment")
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in response.headers["Content-Security-Policy"]
            assert response.headers["Cache-Control"] == "private, no-store"


async def test_a_refused_upload_is_never_kept(pair: list[RunningNode]) -> None:
    hengyang, _shaoyang = pair
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        for path, headers in (
            ("/api/v1/uploads", clerk._headers()),
            ("/api/v1/public/uploads", {}),
        ):
            async with http.post(
                hengyang.url + path, data=HTML, headers={**headers, "X-File-Name": "a.pdf"}
            ) as response:
                assert response.status == 415
                assert (await response.json())["error"] == "file_type_not_accepted"
    assert not await hengyang.fed.blobs.has(hashlib.sha256(HTML).hexdigest())


async def test_one_rating_per_stage_and_the_citizen_channel(pair: list[RunningNode]) -> None:
    hengyang, _shaoyang = pair
    async with aiohttp.ClientSession() as http:
        citizen = ApiClient(hengyang.url, http)
        citizen.token = APPLICANT_TOKEN[0]
        item = await citizen.ok("GET", "/api/v1/catalog/430400-XK-0002")
        created = await citizen.ok(
            "POST",
            "/api/v1/public/applications",
            {
                "item_code": "430400-XK-0002",
                "applicant": PERSON,
                "form": form_for(item, business_name="刘洋足浴店"),
                "materials": await materials_for(citizen, item, public=True),
                "delivery": {"method": "window", "address": None},
            },
            status=201,
        )
        case, code = created["case"], created["query_code"]
        approver = await ApiClient(hengyang.url, http).login("approver")
        await approver.act(case["id"], "accept")
        rating = {"code": code, "level": 1, "stage": "accept", "channel": 4, "comment": "排队太久"}
        path = f"/api/v1/public/cases/{case['case_no']}/rating"
        await citizen.ok("POST", path, rating, status=201)
        again = await citizen.ok("POST", path, {**rating, "level": 2}, status=409)
        assert again["error"] == "already_rated"
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        refused = await clerk.act(
            case["id"],
            "rate",
            {"level": 2, "stage": "accept", "channel": 4, "comment": "再评一次"},
            status=409,
        )
        assert refused["error"] == "already_rated"
    async with hengyang.db.read() as conn:
        rows = (await conn.execute(select(ratings).where(ratings.c.case_id == case["id"]))).all()
    # One rating, one rectification, and the channel is the endpoint's (2, mobile).
    assert [(r.level, r.channel) for r in rows] == [(1, 2)]


def test_a_stranger_cannot_lock_the_applicant_out() -> None:
    limiter = RateLimiter(rate_per_minute=10, burst=10)
    case_no = "430400-20261201-00001"
    for _ in range(10):
        assert lookup_allowed(limiter, "203.0.113.9", case_no)
    assert not lookup_allowed(limiter, "203.0.113.9", case_no)
    # The applicant, from their own phone, still gets in.
    assert lookup_allowed(limiter, "198.51.100.7", case_no)


async def test_uploads_no_case_used_are_removed_after_a_day(pair: list[RunningNode]) -> None:
    hengyang, _shaoyang = pair
    blobs = hengyang.fed.blobs
    async with aiohttp.ClientSession() as http:
        citizen = ApiClient(hengyang.url, http)
        citizen.token = APPLICANT_TOKEN[0]
        old = await citizen.upload(pdf("一天前的上传"), "a.pdf", public=True)
        fresh = await citizen.upload(pdf("刚刚上传"), "b.pdf", public=True)
        item = await citizen.ok("GET", "/api/v1/catalog/430400-XK-0002")
        materials = await materials_for(citizen, item, public=True)
        created = await citizen.ok(
            "POST",
            "/api/v1/public/applications",
            {
                "item_code": "430400-XK-0002",
                "applicant": PERSON,
                "form": form_for(item, business_name="刘洋足浴店"),
                "materials": materials,
                "delivery": {"method": "window", "address": None},
            },
            status=201,
        )
    used = [m["blob"] for m in materials if m.get("blob")]
    assert used and created["case"]["id"]
    # Everything uploaded two days ago: only what no case uses goes.
    async with hengyang.db.write() as conn:
        await conn.execute(update(uploads).values(uploaded_at=time.time() - 2 * 86400))
        await conn.execute(
            update(uploads)
            .where(uploads.c.sha256 == fresh["sha256"])
            .values(uploaded_at=time.time())
        )
    removed = await remove_unclaimed(hengyang.db, blobs, now=time.time())
    assert removed == 1
    assert not await blobs.has(old["sha256"])
    assert await blobs.has(fresh["sha256"])
    assert all([await blobs.has(digest) for digest in used])
    async with hengyang.db.read() as conn:
        left = {r.sha256 for r in await conn.execute(select(uploads.c.sha256))}
    assert old["sha256"] not in left and fresh["sha256"] in left and set(used) <= left
