"""CPU time and memory of a process from /proc (Linux; psutil is not a dependency)."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(self.user - other.user, self.system - other.system)


def cpu(pid: int) -> CpuSample:
    """utime and stime of ``pid`` (all its threads), seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return CpuSample(int(fields[11]) / _TICKS, int(fields[12]) / _TICKS)


@dataclass(frozen=True)
class MachineSample:
    """The aggregate ``cpu`` line of /proc/stat, seconds (all cores)."""

    busy: float
    idle: float
    steal: float

    def __sub__(self, other: MachineSample) -> MachineSample:
        return MachineSample(
            self.busy - other.busy, self.idle - other.idle, self.steal - other.steal
        )


def cpu_by_name(prefix: str) -> dict[int, CpuSample]:
    """CPU of every process whose command name starts with ``prefix`` (e.g. the PostgreSQL
    server's processes, ``postgres``), by pid."""
    found: dict[int, CpuSample] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name.startswith(prefix):
            fields = text[text.rindex(")") + 2 :].split()
            found[int(entry.name)] = CpuSample(int(fields[11]) / _TICKS, int(fields[12]) / _TICKS)
    return found


def cpu_used_since(before: dict[int, CpuSample], after: dict[int, CpuSample]) -> float:
    """Seconds used between two ``cpu_by_name`` samples (processes started in between count
    whole; those that ended in between are lost)."""
    total = 0.0
    for pid, sample in after.items():
        start = before.get(pid)
        total += (sample - start).total if start is not None else sample.total
    return total


def machine_cpu() -> MachineSample:
    fields = [int(x) / _TICKS for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    return MachineSample(user + nice + system + irq + softirq, idle + iowait, steal)


def calibrate(rounds: int = 3) -> float:
    """Milliseconds for a fixed pure-Python workload (JSON + hashing + dict work), best of
    ``rounds``: the machine's single-core speed at this moment. On a shared VM it moves by
    tens of percent; compare runs only with similar values."""
    import hashlib
    import json

    doc = {"kind": "pause", "reason": "需对经营场所进行专家评审" * 20, "n": list(range(50))}
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(2000):
            text = json.dumps({**doc, "i": i})
            hashlib.sha256(text.encode()).hexdigest()
            json.loads(text)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set size) of ``pid``, MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def machine_info(repo: Path) -> dict[str, object]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    versions: dict[str, str] = {}
    for name in ("aiohttp", "sqlalchemy", "aiosqlite", "asyncpg", "cryptography", "jwt"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            pass
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    status = git("status", "--porcelain")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }
