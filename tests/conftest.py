from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.databases import DatabaseFactory


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path)
    yield factory
    await factory.drop_all()
