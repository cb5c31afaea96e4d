"""A partners.toml naming a plain-HTTP partner off loopback is refused when it is loaded (a
clear error naming the partner and the fix), and `tongban doctor` reports it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import FederationSettings, NodeConfig
from node.doctor import run_checks
from node.federation.partners import PartnersFileError, load_partners
from tests.support.databases import DatabaseFactory
from tests.support.nodes import make_configs


def move_partner(config: NodeConfig, url: str) -> None:
    text = config.partners_file.read_text(encoding="utf-8")
    lines = [f'url = "{url}"' if line.startswith("url = ") else line for line in text.splitlines()]
    config.partners_file.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def test_plain_http_partner_is_refused_on_load_and_reported_by_doctor(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    shaoyang, _hengyang = await make_configs(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")]
    )
    strict = FederationSettings()
    assert set(load_partners(shaoyang.partners_file, strict)) == {"430400"}  # loopback is fine

    move_partner(shaoyang, "http://10.20.0.4:8400")
    with pytest.raises(PartnersFileError) as exc:
        load_partners(shaoyang.partners_file, strict)
    message = str(exc.value)
    assert "partner 430400 衡阳市" in message and "plain_http_refused" in message
    assert "https://" in message and "allow_plain_http" in message  # the fix
    # Reading without settings (tongban partners list, doctor) still works; the switch allows.
    assert set(load_partners(shaoyang.partners_file)) == {"430400"}
    assert set(load_partners(shaoyang.partners_file, FederationSettings(allow_plain_http=True)))

    checks = await run_checks(shaoyang)
    refused = [c for c in checks if c.name == "partners.toml"]
    assert len(refused) == 1 and refused[0].level == "fail"
    assert "430400 衡阳市" in refused[0].message and "plain_http_refused" in refused[0].message

    # `tongban run` refuses to start with it, and says why.
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "node.cli", "run", "--dir", str(shaoyang.dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "plain_http_refused" in run.stdout + run.stderr
    assert "430400" in run.stdout + run.stderr

    move_partner(shaoyang, "https://430400.tongban.example")
    checks = await run_checks(shaoyang)
    assert not [c for c in checks if c.name == "partners.toml"]
