"""`tongban doctor`: checks an operator runs before and after changes.

Each check prints a line with ok / warn / fail and what to do. Exit status 1 if any failed.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import ssl
import stat
import time
from dataclasses import dataclass
from datetime import date, timedelta

import aiohttp
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from node.config import NodeConfig, is_loopback_url, plain_http_refused
from node.fdlimit import NEEDED as NEEDED_OPEN_FILES
from node.fdlimit import WANTED as WANTED_OPEN_FILES
from node.fdlimit import open_files_limits, usable_limit
from node.federation.client import client_ssl_context
from node.federation.directory_state import report as directory_report
from node.federation.identity import NodeIdentity
from node.federation.partners import refused_partners
from node.federation.trust import TrustStore
from node.filemodes import loose_files, sqlite_files
from node.http_answers import read_answer
from node.ops.tls import server_ssl_context
from node.storage.blobs import open_blob_store
from node.storage.database import Database
from node.storage.migrate import alembic_config
from node.workdays.service import load_calendar
from protocol.claims import CLOCK_SKEW
from protocol.descriptor import MAX_DESCRIPTOR_BYTES, verify_descriptor

#: Warn when the served TLS certificate expires within this many days.
CERT_WARN_DAYS = 30


@dataclass(frozen=True)
class Check:
    level: str  # "ok" | "warn" | "fail"
    name: str
    message: str


async def run_checks(config: NodeConfig, *, today: date | None = None) -> list[Check]:
    checks: list[Check] = []
    mode = stat.S_IMODE(os.stat(config.key_file).st_mode) if config.key_file.exists() else None
    if mode is None:
        checks.append(Check("fail", "key", f"{config.key_file} 不存在 missing"))
    elif mode & 0o077:
        checks.append(Check("fail", "key", f"node.key 权限过宽 mode {oct(mode)}: chmod 600"))
    else:
        checks.append(Check("ok", "key", "node.key 0600"))
    checks.append(_file_modes(config))
    checks.append(_open_files())
    checks.extend(_tls(config))
    if config.blobs.backend == "s3":
        checks.append(await _blob_store(config))
    db = Database(config.database_url)
    try:
        try:
            async with db.read() as conn:
                current = await conn.run_sync(
                    lambda c: set(MigrationContext.configure(c).get_current_heads())
                )
            heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
            if current == heads:
                checks.append(Check("ok", "database", "数据库可用，结构为最新 schema up to date"))
            else:
                checks.append(Check("warn", "database", "数据库结构待升级：启动节点即自动迁移"))
        except Exception as exc:
            checks.append(Check("fail", "database", f"无法连接数据库 cannot connect: {exc}"))
            return checks
        identity = await NodeIdentity.load(config, db)
        checks.append(Check("ok", "identity", f"签名密钥 {identity.kid}"))
        trust = TrustStore(db, config.partners_file)
        await trust.load()
        for problem in refused_partners(trust.partners, config.federation):
            checks.append(
                Check("fail", "partners.toml", f"tongban run 拒绝载入 refuses to load: {problem}")
            )
        checks.extend(await _partners(config, trust))
        if config.directory is not None:
            checks.append(_directory(config, time.time(), identity.kid))
        checks.append(await _calendar(db, today))
    finally:
        await db.dispose()
    return checks


def _open_files() -> Check:
    """Whether ``tongban run`` started from here can hold the connections of partners catching
    up (node/fdlimit.py; docs/operations.md, Open files)."""
    usable = usable_limit(*open_files_limits())
    if usable < NEEDED_OPEN_FILES:
        return Check(
            "warn",
            "open files",
            f"打开文件数上限过低 open files limit {usable} < {NEEDED_OPEN_FILES}: "
            "raise LimitNOFILE (systemd) or ulimit -n",
        )
    shown = min(usable, WANTED_OPEN_FILES)
    return Check("ok", "open files", f"打开文件数上限 open files limit {shown}")


def _file_modes(config: NodeConfig) -> Check:
    """Nobody but the node's user may read the node directory, the database, the secrets and
    the blobs (docs/operations.md, File modes)."""
    paths = [config.dir, *sqlite_files(config.database_url)]
    trees = [config.dir / "secrets", config.retired_key_dir]
    if config.blobs.backend == "folder":
        trees.append(config.blob_dir)
    found = loose_files(paths, trees)
    if not found:
        return Check("ok", "files", "节点目录 0700，数据库、密钥与文件 0600 (private)")
    shown = "; ".join(
        f"{path} {oct(mode)}: chmod {'700' if path.is_dir() else '600'}" for path, mode in found[:5]
    )
    more = f" (+{len(found) - 5} more)" if len(found) > 5 else ""
    return Check("fail", "files", f"权限过宽 readable by others: {shown}{more}")


async def _blob_store(config: NodeConfig) -> Check:
    """The S3 bucket answers with our credentials (HEAD bucket, list under the prefix)."""
    path = config.blobs.credentials_file
    if path and os.path.exists(path) and stat.S_IMODE(os.stat(path).st_mode) & 0o077:
        return Check("fail", "blobs", f"{path} 权限过宽 readable by others: chmod 600")
    store = open_blob_store(config)
    try:
        message = await asyncio.wait_for(store.check(), timeout=config.blobs.timeout + 5)
    except Exception as exc:
        return Check(
            "fail",
            "blobs",
            f"对象存储不可用 bucket not reachable {store.describe()}: {type(exc).__name__}: {exc}",
        )
    finally:
        await store.close()
    return Check("ok", "blobs", message)


async def _partners(config: NodeConfig, trust: TrustStore) -> list[Check]:
    if not trust.partners:
        return [Check("warn", "partners", "partners.toml 中没有伙伴 no partners yet")]
    out = []
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        connector = aiohttp.TCPConnector(ssl=client_ssl_context(config.federation))
    except (OSError, ssl.SSLError) as exc:
        return [Check("fail", "partners", f"ca_file 无法载入 cannot load: {exc}")]
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for partner in trust.partners.values():
            name = f"partner {partner.region} {partner.name}"
            refused = plain_http_refused(partner.url, config.federation)
            if refused is not None:
                out.append(Check("fail", name, refused))
                continue
            try:
                async with session.get(f"{partner.url}/.well-known/tongban/node") as resp:
                    read = await read_answer(resp, MAX_DESCRIPTOR_BYTES)
                    server_date = resp.headers.get("Date")
                body = b"" if read is None else read  # too long: refused as malformed below
                verify_descriptor(body, trust.keys, region=partner.region, now=time.time())
            except aiohttp.ClientConnectorCertificateError as exc:
                out.append(
                    Check(
                        "fail",
                        name,
                        f"tls_certificate_error: 证书校验失败 {exc.certificate_error}"
                        " (private CA? set [federation] ca_file)",
                    )
                )
                continue
            except Exception as exc:
                out.append(Check("fail", name, f"不可达或描述无效 unreachable/invalid: {exc}"))
                continue
            out.append(_skew(name, server_date))
    return out


#: Warn when the directory in force expires within this many seconds.
DIRECTORY_WARN_SECONDS = 24 * 3600


def _directory(config: NodeConfig, now: float, own_kid: str) -> Check:
    """The partner directory in force (its serial, age, expiry), the last fetch's error, and
    whether the directory lists this node's signing key (partners that follow it learn a
    rotated key only once the authority has the new entry)."""
    found = directory_report(config, now)
    status, directory = found.status, found.in_force
    if directory is None:
        code = found.kept_refused or status.last_error or "none fetched yet"
        return Check(
            "fail",
            "directory",
            f"无生效伙伴目录 no partner directory in force ({code}): 目录中的伙伴不可用; "
            f"check {found.url} and `tongban directory status`",
        )
    summary = (
        f"serial {directory.serial} from {directory.iss}, {len(directory.entries)} regions, "
        f"age {now - directory.iat:.0f} s, expires in {directory.exp - now:.0f} s"
    )
    own = directory.entries.get(config.region)
    if own is not None and own_kid not in {k.kid for k in own.keys}:
        return Check(
            "warn",
            "directory",
            f"directory_own_key_missing: 目录中本节点的条目不含当前签名密钥 {own_kid}; "
            f"把 `tongban partners self` 的输出交给目录签发机构 (register the new entry). "
            f"{summary}",
        )
    if status.last_error:
        return Check(
            "warn",
            "directory",
            f"上次获取被拒 last fetch refused: {status.last_error} "
            f"({status.last_error_detail}); 仍使用 still in force: {summary}",
        )
    if directory.exp - now < DIRECTORY_WARN_SECONDS:
        return Check("warn", "directory", f"伙伴目录即将过期 expires soon: {summary}")
    return Check("ok", "directory", f"伙伴目录有效 in force: {summary}")


def _skew(name: str, server_date: str | None) -> Check:
    """Clock skew against a partner from its HTTP Date header (one-second resolution).
    Envelopes tolerate 300 s (docs/protocol.md): warn at half of it, fail beyond it."""
    if not server_date:
        return Check("warn", name, "可达，描述有效；对方未发送 Date 头，无法检查时钟偏差")
    try:
        skew = abs(email.utils.parsedate_to_datetime(server_date).timestamp() - time.time())
    except (TypeError, ValueError):
        return Check("warn", name, f"Date 头无法解析 unparsable Date header: {server_date!r}")
    if skew > CLOCK_SKEW:
        return Check("fail", name, f"时钟偏差 clock skew {skew:.0f} s > {CLOCK_SKEW} s: 校准 NTP")
    if skew > CLOCK_SKEW / 2:
        return Check("warn", name, f"时钟偏差 clock skew {skew:.0f} s: 请检查 NTP")
    return Check("ok", name, f"可达，描述签名有效，时钟偏差 {skew:.0f} s (reachable, verifies)")


def _tls(config: NodeConfig) -> list[Check]:
    """The node's own URL scheme, its served certificate (if it serves TLS) and ca_file."""
    out = []
    if config.url.startswith("https://"):
        out.append(Check("ok", "tls", f"对外地址使用 HTTPS: {config.url}"))
    elif is_loopback_url(config.url):
        out.append(Check("warn", "tls", f"对外地址为本机 HTTP {config.url}: 仅适合测试与演示"))
    else:
        out.append(
            Check(
                "fail",
                "tls",
                f"plain_http_refused: 对外地址 {config.url} 须为 https:// (伙伴会拒绝明文 HTTP)",
            )
        )
    if config.federation.allow_plain_http:
        out.append(Check("warn", "tls", "allow_plain_http = true: 伙伴间通信未加密，仅限内网测试"))
    if config.federation.ca_file:
        try:
            client_ssl_context(config.federation)
            out.append(Check("ok", "tls", f"ca_file 已载入 {config.federation.ca_file}"))
        except (OSError, ssl.SSLError) as exc:
            out.append(Check("fail", "tls", f"ca_file 无法载入 cannot load: {exc}"))
    if config.tls_cert is not None:
        out.append(_served_certificate(config))
    return out


def _served_certificate(config: NodeConfig) -> Check:
    from cryptography import x509

    try:
        server_ssl_context(config)
        assert config.tls_cert is not None
        cert = x509.load_pem_x509_certificate(config.tls_cert.read_bytes())
    except Exception as exc:
        return Check("fail", "tls", f"tls_cert/tls_key 无法载入 cannot load: {exc}")
    days = (cert.not_valid_after_utc.timestamp() - time.time()) / 86400
    if days < 0:
        return Check("fail", "tls", f"服务证书已过期 certificate expired {-days:.0f} days ago")
    if days < CERT_WARN_DAYS:
        return Check("warn", "tls", f"服务证书 {days:.0f} 天后过期 expires soon: 请续期")
    return Check("ok", "tls", f"服务证书有效期还有 {days:.0f} 天")


async def _calendar(db: Database, today: date | None = None) -> Check:
    """The holiday calendar must cover the coming year (today + 365 days): deadlines past the
    loaded years are provisional (weekends only)."""
    calendar = await load_calendar(db)
    today = today or date.today()
    horizon = today + timedelta(days=365)
    missing = [y for y in range(today.year, horizon.year + 1) if not calendar.covers(y)]
    if missing:
        years = "、".join(str(y) for y in missing)
        return Check(
            "warn",
            "calendar",
            f"未载入 {years} 年节假日安排：超出部分的期限按周末临时计算；"
            "国务院办公厅通知发布后请执行 tongban calendar load",
        )
    return Check("ok", "calendar", f"节假日数据覆盖至 {horizon.isoformat()} (未来一年)")


def main(config: NodeConfig) -> int:
    checks = asyncio.run(run_checks(config))
    for check in checks:
        print(f"[{check.level:>4}] {check.name}: {check.message}")
    return 1 if any(c.level == "fail" for c in checks) else 0
