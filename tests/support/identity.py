"""The development identity provider (node/identity/devprovider.py) for tests: served on a
real port, trusted by test nodes through ``[identity]``, issuing real signed ID tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
