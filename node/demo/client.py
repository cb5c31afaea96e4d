"""Talking to the demo nodes like people do: a window clerk, an approver, a supervisor and a
citizen, through the staff and public API of the running nodes (`Seeder`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from node.demo.regions import DEMO_PASSWORD, client_id
from node.identity.devprovider import DevProvider, Person

#: How long the demo waits for a message to reach the other node before it gives up.
HOP_TIMEOUT = 60.0


class DemoError(Exception):
    pass


def sample_pdf(text: str) -> bytes:
    """A small valid PDF whose bytes differ per ``text`` (distinct digests): the demo's
    uploads, and the tests'."""
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
            self.urls[region] + path, data=sample_pdf(f"{name} {time.time()}"), headers=headers
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
        defaults = {"text": "见申请材料", "number": 1, "date": days_from_today(10)}
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


def days_from_today(days: int) -> str:
    """The ISO date ``days`` from today (the machine's local date)."""
    return (datetime.now() + timedelta(days=days)).date().isoformat()
