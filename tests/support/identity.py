"""The development identity provider (node/identity/devprovider.py) for tests: served on a
real port, trusted by test nodes through ``[identity]``, issuing real signed ID tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from urllib.parse import quote

import aiohttp

from node.identity.devprovider import DevProvider, Person, RunningProvider, serve
from tests.support.nodes import RunningNode, free_port

CLIENT_ID = "tongban-test"
#: A citizen with a well-formed 居民身份证号码 (the one the tests' window applicant uses).
LIU_YANG = Person("刘洋", "11010519491231002X")


def identity_toml(issuer: str, *, client_id: str = CLIENT_ID) -> str:
    return f'\n[identity]\nissuer = "{issuer}"\nclient_id = "{client_id}"\n'


@asynccontextmanager
async def running_provider(alg: str = "RS256") -> AsyncIterator[RunningProvider]:
    port = free_port()
    provider = DevProvider(issuer=f"http://127.0.0.1:{port}", people=(LIU_YANG,), alg=alg)
    running = await serve(provider, "127.0.0.1", port)
    try:
        yield running
    finally:
        await running.stop()


def trust(provider: DevProvider, *nodes: RunningNode) -> None:
    """Register each node's callback with the provider, under the tests' client id."""
    for node in nodes:
        provider.register(CLIENT_ID, node.url + "/citizen/callback")


class HiddenForm(HTMLParser):
    """The provider's authorize form: its action and hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values.get("action", "")
        if tag == "input" and values.get("type") == "hidden":
            self.fields[values["name"]] = values.get("value", "")


async def citizen_login(
    http: aiohttp.ClientSession, node: RunningNode, provider: DevProvider, next_path: str
) -> str:
    """Sign in at ``node`` as the provider's first person, the way a browser would (``http``
    needs a cookie jar that keeps cookies of IP hosts); returns the page ``next`` led to."""
    async with http.get(f"{node.url}/citizen/login?next={quote(next_path, safe='')}") as resp:
        form = HiddenForm()
        form.feed(await resp.text())
    async with http.post(
        provider.issuer + form.action, data={**form.fields, "person": "0"}
    ) as resp:
        assert resp.status == 200, resp.status
        return await resp.text()
