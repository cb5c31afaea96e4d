"""node/fdlimit.py: `tongban run` raises its soft limit of open files to the hard one, and
`tongban doctor` warns when the hard limit is too low for partners catching up."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from node.fdlimit import NEEDED, WANTED, usable_limit
from tests.support.databases import DatabaseFactory
from tests.support.nodes import NodeProcess, make_configs

_, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)
needs_room = pytest.mark.skipif(
    HARD != resource.RLIM_INFINITY and HARD < 2048,
    reason="the hard limit of open files here leaves no room to raise a soft limit",
)


def _low_soft_limit() -> None:
    """In the child before exec: a soft limit of 1,024 (a service's usual start)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, HARD))


def _soft_limit_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open files line")


@needs_room
def test_raise_open_files_limit_goes_to_the_hard_limit_at_most_wanted() -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource; from node.fdlimit import raise_open_files_limit;"
            "before = resource.getrlimit(resource.RLIMIT_NOFILE)[0];"
            "after = raise_open_files_limit();"
            "print(before, after, resource.getrlimit(resource.RLIMIT_NOFILE)[1])",
        ],
        preexec_fn=_low_soft_limit,
        capture_output=True,
        text=True,
        check=True,
    )
    before, after, hard = (int(x) for x in probe.stdout.split())
    assert before == 1024
    expected = WANTED if HARD == resource.RLIM_INFINITY else min(WANTED, HARD)
    assert after == expected
    assert hard == HARD  # the hard limit is never touched


@needs_room
async def test_tongban_run_starts_with_a_low_soft_limit_and_raises_it(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    (config,) = await make_configs(tmp_path, databases, [("430400", "衡阳市")])
    node = NodeProcess(config, tmp_path)
    real_popen = subprocess.Popen

    def popen_with_low_limit(*args, **kwargs):  # type: ignore[no-untyped-def]
        return real_popen(*args, preexec_fn=_low_soft_limit, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", popen_with_low_limit)
        await node.start()
    try:
        assert node.proc is not None
        expected = WANTED if HARD == resource.RLIM_INFINITY else min(WANTED, HARD)
        assert _soft_limit_of(node.proc.pid) == expected
    finally:
        node.stop()


def _doctor_open_files(limits: tuple[int, int]) -> tuple[str, str]:
    """The doctor's open-files check in a process started under ``limits`` (soft, hard)."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from node.doctor import _open_files; c = _open_files(); print(c.level, c.message)",
        ],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits),
        capture_output=True,
        text=True,
        check=True,
    )
    level, message = probe.stdout.strip().split(" ", 1)
    return level, message


def test_doctor_warns_when_the_hard_limit_is_too_low() -> None:
    level, message = _doctor_open_files((1024, 2048))
    assert level == "warn" and "2048" in message


@needs_room
def test_doctor_is_content_when_run_can_raise_the_limit_far_enough() -> None:
    if HARD != resource.RLIM_INFINITY and HARD < NEEDED:
        pytest.skip("this machine's own hard limit is below what the doctor asks for")
    level, _message = _doctor_open_files((1024, HARD))
    assert level == "ok"


@pytest.mark.parametrize(
    ("soft", "hard", "usable"),
    [(1024, 1048576, WANTED), (1024, 2048, 2048), (100000, 1048576, 100000), (1024, 1024, 1024)],
)
def test_usable_limit_is_what_run_will_have(soft: int, hard: int, usable: int) -> None:
    assert usable_limit(soft, hard) == usable
    assert (usable < NEEDED) == (hard < NEEDED and soft < NEEDED)
