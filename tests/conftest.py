from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from node.accounts import service as accounts
from tests.support.databases import DatabaseFactory, drop_templates
from tests.support.nodes import RunningNode
from tests.support.regions import start_regions

#: argon2id with small parameters for the accounts every test makes and logs in with: the
#: same algorithm and code paths at a fraction of the cost (the production parameters, 64 MiB
#: and 3 passes, took about 0.8 s a hash on this 2-core machine under the suite's load, and
#: each test node makes six staff accounts). tests/test_accounts.py checks that a hash made
#: with other parameters is rehashed at login, with the production hasher.
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "HASHER", TEST_HASHER)


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path)
    yield factory
    await factory.drop_all()


@pytest.fixture(scope="session", autouse=True)
def migrated_templates() -> Iterator[None]:
    """The migrated template databases this process made (tests/support/databases.py) go
    when the session ends."""
    yield
    asyncio.run(drop_templates())


@pytest.fixture
async def regions(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    """衡阳市 (the receiving window) and 邵阳县 (the handling region), running and partnered;
    a test file with other regions defines its own ``regions``."""
    nodes = await start_regions(tmp_path, databases, [("430400", "衡阳市"), ("430523", "邵阳县")])
    yield nodes
    for node in nodes:
        await node.stop()
