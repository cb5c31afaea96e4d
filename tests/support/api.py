"""Talking to a node's staff and public API like a browser would."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from node.demo.client import sample_pdf

PASSWORD = "tongban-test-pw"


_LOGIN_CSRF = re.compile(
    r'action="/login"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)">'
)


async def form_login(
    http: aiohttp.ClientSession,
    base_url: str,
    username: str,
    password: str = PASSWORD,
    next_: str = "",
) -> aiohttp.ClientResponse:
    """Sign in with the login form as a browser does: load it (its CSRF cookie and field),
    then post it. The answer (302 on success) is not followed; the caller closes it."""
    async with http.get(f"{base_url}/login") as page:
        found = _LOGIN_CSRF.search(await page.text())
        # Sent explicitly: a default cookie jar keeps no cookies of an IP address.
        cookies = {name: morsel.value for name, morsel in page.cookies.items()}
    assert found is not None, "the login form has no CSRF field"
    return await http.post(
        f"{base_url}/login",
        data={"username": username, "password": password, "next": next_, "csrf": found.group(1)},
        cookies=cookies,
        allow_redirects=False,
    )


class ApiClient:
    """One logged-in staff member (or an anonymous citizen) of one node."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self._session = session
        self.token: str | None = None

    async def login(self, username: str, password: str = PASSWORD) -> ApiClient:
        status, body = await self.call(
            "POST", "/api/v1/login", {"username": username, "password": password}
        )
        assert status == 200, body
        self.token = body["token"]
        return self

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        async with self._session.request(
            method, self.base_url + path, json=json, headers=self._headers()
        ) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.read()

    async def ok(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        got, body = await self.call(method, path, json)
        assert got == status, f"{method} {path}: {got} {body}"
        return body

    async def upload(self, data: bytes, name: str, *, public: bool = False) -> dict[str, Any]:
        from urllib.parse import quote

        headers = {
            **self._headers(),
            "X-File-Name": quote(name),
            "Content-Type": "application/octet-stream",
        }
        path = "/api/v1/public/uploads" if public else "/api/v1/uploads"
        async with self._session.post(self.base_url + path, data=data, headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 201, body
            return body

    async def act(
        self, case_id: int, action: str, payload: dict[str, Any] | None = None, status: int = 200
    ) -> Any:
        return await self.ok(
            "POST", f"/api/v1/cases/{case_id}/actions/{action}", payload or {}, status
        )


#: A small valid PDF whose content differs per text (the demo makes its uploads with it).
pdf = sample_pdf
