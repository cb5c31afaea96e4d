"""HTTPS between nodes: a node serving TLS with a certificate of a private CA; a partner that
trusts the CA (``[federation] ca_file``) delivers, one that does not refuses the certificate
and delivers nothing; plain HTTP to a non-loopback partner is refused everywhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from node.app import create_app
from node.cli import main as cli
from node.config import ConfigError, FederationSettings, NodeConfig, plain_http_refused
from node.federation.client import PartnerClient, TransportError
from node.federation.models import inbound_envelopes, outbox
from node.ops.tls import server_ssl_context
from node.provisioning import init_node, link_all
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory
from tests.support.nginx import make_certs, nginx_config
from tests.support.nodes import FAST_FEDERATION, RunningNode, free_port
from tests.support.waiting import wait_until

PROGRESS = example_body("case.progress")[0]
RUN = [sys.executable, "-m", "node.cli", "run", "--dir"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(tmp: Path, label: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Tongban test CA {label}"))
        .issuer_name(_name(f"Tongban test CA {label}"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = tmp / f"ca-{label}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def issue(
    tmp: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, *, days: int = 2
) -> tuple[Path, Path]:
    """A server certificate for localhost / 127.0.0.1 signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "server.crt", tmp / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


async def start_tls(node: RunningNode) -> RunningNode:
    """Serve ``node`` over HTTPS with its tls_cert/tls_key, as `tongban run` does."""
    node.app = create_app(node.config)
    node.runner = web.AppRunner(node.app)
    await node.runner.setup()
    site = web.TCPSite(
        node.runner,
        node.config.host,
        node.config.port,
        ssl_context=server_ssl_context(node.config),
    )
    await site.start()
    return node


async def count(node: RunningNode, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with node.db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


@pytest.fixture
async def trio(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    """衡阳市 serves HTTPS with a private-CA certificate; 邵阳县 trusts the CA; 东营市 does not
    (it trusts another CA only)."""
    ca_key, ca_cert, ca_file = make_ca(tmp_path, "region")
    _other_key, _other_cert, other_ca = make_ca(tmp_path, "other")
    cert, key = issue(tmp_path, ca_key, ca_cert)
    port = free_port()
    hengyang = await init_node(
        tmp_path / "430400",
        region="430400",
        name="衡阳市",
        url=f"https://localhost:{port}",
        port=port,
        database_url=await databases.new_url("430400"),
        extra_toml=f'tls_cert = "{cert}"\ntls_key = "{key}"\n' + FAST_FEDERATION,
    )
    others = []
    for region, name, ca in (("430523", "邵阳县", ca_file), ("370500", "东营市", other_ca)):
        others.append(
            await init_node(
                tmp_path / region,
                region=region,
                name=name,
                port=free_port(),
                database_url=await databases.new_url(region),
                extra_toml=FAST_FEDERATION + f'ca_file = "{ca}"\n',
            )
        )
    await link_all([hengyang, *others])
    nodes = [await start_tls(RunningNode(hengyang))]
    nodes += [await RunningNode(c).start() for c in others]
    yield nodes
    for node in nodes:
        await node.stop()


async def test_partner_trusting_the_ca_delivers_and_one_without_it_delivers_nothing(
    trio: list[RunningNode],
) -> None:
    hengyang, shaoyang, dongying = trio
    assert hengyang.url.startswith("https://")
    await shaoyang.send("430400", "case.progress", "XT-TLS-1", PROGRESS)
    await dongying.send("430400", "case.progress", "XT-TLS-2", PROGRESS)

    async def trusted_delivered() -> bool:
        return await count(shaoyang, outbox, outbox.c.delivered_at.is_not(None)) == 1

    async def untrusted_failed() -> bool:
        async with dongying.db.read() as conn:
            row = (await conn.execute(select(outbox.c.last_error, outbox.c.attempts))).one()
        return row.attempts >= 2 and "tls_certificate_error" in (row.last_error or "")

    await wait_until(trusted_delivered)
    await wait_until(untrusted_failed)
    # The certificate failure is a transport failure: retried, never a dead letter, and
    # nothing from 东营市 reached 衡阳市.
    async with dongying.db.read() as conn:
        row = (await conn.execute(select(outbox))).one()
    assert row.delivered_at is None and row.dead_at is None
    assert "certificate verify failed" in row.last_error
    assert await count(hengyang, inbound_envelopes, inbound_envelopes.c.iss == "370500") == 0
    assert await count(hengyang, inbound_envelopes, inbound_envelopes.c.iss == "430523") == 1


async def test_doctor_reports_certificate_trust_and_served_certificate(
    trio: list[RunningNode],
) -> None:
    from node.doctor import run_checks

    hengyang, shaoyang, dongying = trio
    trusted = {c.name: c for c in await run_checks(shaoyang.config)}
    assert trusted["partner 430400 衡阳市"].level == "ok"
    untrusted = {c.name: c for c in await run_checks(dongying.config)}
    assert untrusted["partner 430400 衡阳市"].level == "fail"
    assert untrusted["partner 430400 衡阳市"].message.startswith("tls_certificate_error")
    served = [c for c in await run_checks(hengyang.config) if c.name == "tls"]
    # https URL ok; the served certificate lasts 2 more days: renew soon.
    assert [c.level for c in served] == ["ok", "warn"]
    assert "expires soon" in served[1].message


def test_plain_http_is_refused_to_non_loopback_partners() -> None:
    strict = FederationSettings()
    assert plain_http_refused("https://node.example.gov.cn", strict) is None
    assert plain_http_refused("http://127.0.0.1:8400", strict) is None
    assert plain_http_refused("http://localhost:8400", strict) is None
    refused = plain_http_refused("http://node.example.gov.cn", strict)
    assert refused is not None and refused.startswith("plain_http_refused:")
    assert plain_http_refused("ftp://node.example.gov.cn", strict) is not None
    lax = FederationSettings(allow_plain_http=True)
    assert plain_http_refused("http://10.0.0.7:8400", lax) is None


async def test_client_refuses_plain_http_before_connecting(tmp_path: Path) -> None:
    client = PartnerClient(identity=None, blobs=None, settings=FederationSettings())  # type: ignore[arg-type]
    await client.start()
    try:
        with pytest.raises(TransportError, match=r"^plain_http_refused"):
            await client.get_descriptor("http://192.0.2.10:8400")
    finally:
        await client.close()


async def test_partners_add_refuses_a_plain_http_partner(
    tmp_path: Path, databases: DatabaseFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = await init_node(
        tmp_path / "430400",
        region="430400",
        name="衡阳市",
        database_url=await databases.new_url("430400"),
    )
    snippet = tmp_path / "partner.toml"
    snippet.write_text(
        '[[partners]]\nregion = "430523"\nname = "邵阳县"\nurl = "http://node.shaoyang.example"\n',
        encoding="utf-8",
    )
    assert cli(["partners", "add", "--dir", str(config.dir), str(snippet)]) == 1
    assert "plain_http_refused" in capsys.readouterr().err
    assert "430523" not in config.partners_file.read_text(encoding="utf-8")
    # With the explicit switch it is taken.
    toml = config.dir / "tongban.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + "\n[federation]\nallow_plain_http = true\n",
        encoding="utf-8",
    )
    assert cli(["partners", "add", "--dir", str(config.dir), str(snippet)]) == 0
    assert "430523" in config.partners_file.read_text(encoding="utf-8")


def test_tls_cert_without_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        NodeConfig.from_dict(
            tmp_path,
            {"region": "430400", "name": "衡阳市", "url": "https://x", "tls_cert": "a.pem"},
        )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_certificates_of_make_certs_serve_a_tongban_run_process(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    """docker/make-certs.sh's CA and region certificate, served by a real `tongban run`, pass
    the checks of a partner that trusts the CA (and fail one that does not)."""
    certs = tmp_path / "certs"
    script = Path(__file__).resolve().parents[1] / "docker" / "make-certs.sh"
    made = await asyncio.create_subprocess_exec(
        "sh", str(script), str(certs), "430400", stdout=asyncio.subprocess.DEVNULL
    )
    assert await made.wait() == 0
    port = free_port()
    config = await init_node(
        tmp_path / "430400",
        region="430400",
        name="衡阳市",
        url=f"https://localhost:{port}",
        port=port,
        database_url=await databases.new_url("430400"),
        extra_toml=(
            f'tls_cert = "{certs / "430400.fullchain.crt"}"\ntls_key = "{certs / "430400.key"}"\n'
        ),
    )
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "run", "--dir", str(config.dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    trusting = PartnerClient(
        identity=None,  # type: ignore[arg-type]
        blobs=None,  # type: ignore[arg-type]
        settings=FederationSettings(ca_file=str(certs / "ca.crt")),
    )
    strict = PartnerClient(identity=None, blobs=None, settings=FederationSettings())  # type: ignore[arg-type]
    await trusting.start()
    await strict.start()
    try:
        descriptor: dict[str, bytes] = {}

        async def served() -> bool:
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            try:
                descriptor["body"] = await trusting.get_descriptor(config.url)
            except TransportError:
                return False
            return True

        await wait_until(served, timeout=30)
        assert descriptor["body"].count(b".") == 2  # a compact JWS
        with pytest.raises(TransportError, match=r"^tls_certificate_error"):
            await strict.get_descriptor(config.url)
    finally:
        await trusting.close()
        await strict.close()
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("openssl") is None,
    reason="needs nginx and openssl (the topology of docker/compose.yaml)",
)
async def test_two_replicas_behind_nginx_tls_receive_from_a_partner_trusting_the_ca(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    """The compose topology with real processes: region 430400 is two `tongban run` replicas
    on one database and one node directory behind nginx with the docker/ TLS config and a
    make-certs.sh certificate; 430523 trusts the CA and delivers through the proxy."""
    from node.storage.database import Database

    certs = tmp_path / "certs"
    script = Path(__file__).resolve().parents[1] / "docker" / "make-certs.sh"
    made = await asyncio.create_subprocess_exec(
        "sh", str(script), str(certs), "430400", stdout=asyncio.subprocess.DEVNULL
    )
    assert await made.wait() == 0
    proxy_port, http_port = free_port(), free_port()
    replicas = [free_port(), free_port()]
    hengyang = await init_node(
        tmp_path / "430400",
        region="430400",
        name="衡阳市",
        url=f"https://localhost:{proxy_port}",
        port=replicas[0],
        database_url=await databases.new_url("430400"),
        extra_toml=FAST_FEDERATION,
    )
    shaoyang = await init_node(
        tmp_path / "430523",
        region="430523",
        name="邵阳县",
        port=free_port(),
        database_url=await databases.new_url("430523"),
        extra_toml=FAST_FEDERATION + f'ca_file = "{certs / "ca.crt"}"\n',
    )
    await link_all([hengyang, shaoyang])
    conf = nginx_config(tmp_path / "nginx", certs, proxy_port, http_port, replicas)
    procs: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def spawn(name: str, argv: list[str]) -> None:
        with open(logs / f"{name}.log", "wb") as log:
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    sender: RunningNode | None = None
    client = PartnerClient(
        identity=None,  # type: ignore[arg-type]
        blobs=None,  # type: ignore[arg-type]
        settings=FederationSettings(ca_file=str(certs / "ca.crt")),
    )
    await client.start()
    try:
        spawn("nginx", ["nginx", "-p", str(tmp_path / "nginx"), "-c", str(conf)])
        for n, port in enumerate(replicas):
            spawn(
                f"replica-{n}",
                [*RUN, str(hengyang.dir), "--port", str(port)],
            )
        ready: dict[int, int] = {}

        async def replicas_ready() -> bool:
            for proc in procs:
                assert proc.poll() is None, [p.read_text() for p in logs.iterdir()]
            async with aiohttp.ClientSession() as http:
                for port in replicas:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                            ready[port] = resp.status
                    except aiohttp.ClientError:
                        return False
            return all(status == 200 for status in ready.values())

        await wait_until(replicas_ready, timeout=60)
        # Through the proxy, with the region's certificate and the private CA.
        descriptor = await client.get_descriptor(hengyang.url)
        assert descriptor.count(b".") == 2
        sender = await RunningNode(shaoyang).start()
        for n in range(20):
            await sender.send("430400", "case.progress", f"XT-PROXY-{n}", PROGRESS)

        async def all_delivered() -> bool:
            return await count(sender, outbox, outbox.c.delivered_at.is_not(None)) == 20

        await wait_until(all_delivered, timeout=60)
        db = Database(hengyang.database_url)
        try:
            async with db.read() as conn:
                received = (
                    await conn.execute(select(func.count()).select_from(inbound_envelopes))
                ).scalar_one()
        finally:
            await db.dispose()
        assert received == 20
        # The access log has the path of a citizen's query, never its query string.
        query = "/api/v1/public/cases/430523-20261127-0001?code=123456"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"https://localhost:{proxy_port}{query}", ssl=_ca_context(certs)) as resp,
        ):
            assert resp.status in (400, 404)  # no such case, but it went through
        log_file = tmp_path / "nginx" / "access.log"

        async def query_logged() -> bool:
            # nginx writes the line when the request is over, which may be just after the
            # client has its answer.
            return "/api/v1/public/cases/430523-20261127-0001 " in log_file.read_text("utf-8")

        await wait_until(query_logged, timeout=10)
        access_log = log_file.read_text(encoding="utf-8")
        assert "123456" not in access_log
        assert "/federation/v1/envelopes" in access_log
    finally:
        await client.close()
        if sender is not None:
            await sender.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _ca_context(certs: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs / "ca.crt"))


@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx")
def test_nginx_template_is_valid_and_logs_no_query_strings(tmp_path: Path) -> None:
    """`nginx -t` accepts the template (with the test's certificates and ports), and no access
    log format names $request, $request_uri, $args or the Referer."""
    certs = tmp_path / "certs"
    made = subprocess.run(
        [
            "sh",
            str(Path(__file__).resolve().parents[1] / "docker" / "make-certs.sh"),
            str(certs),
            "430400",
        ],
        capture_output=True,
    )
    assert made.returncode == 0, made.stderr
    conf = nginx_config(tmp_path / "nginx", certs, free_port(), free_port(), [free_port()] * 2)
    checked = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path / "nginx"), "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    template = Path(__file__).resolve().parents[1] / "docker" / "nginx" / "region.conf.template"
    text = template.read_text(encoding="utf-8")
    formats = re.findall(r"log_format\s+\S+\s+([^;]*);", text)
    assert formats
    for fmt in formats:
        for variable in (
            "$request ",
            '$request"',
            "$request_uri",
            "$args",
            "$query_string",
            "$http_referer",
        ):
            assert variable not in fmt
    access_logs = re.findall(r"^\s*access_log\s+([^;]*);", text, re.M)
    assert access_logs and all(line.endswith(" tongban_path") for line in access_logs)


def test_the_federation_cap_leaves_room_for_two_replicas_of_a_partner() -> None:
    """nginx refuses federation requests from one address past a cap: it must let a partner
    with two replicas behind one address send two full windows (the client allows window + 4
    connections per partner)."""
    template = Path(__file__).resolve().parents[1] / "docker" / "nginx" / "region.conf.template"
    caps = re.findall(r"limit_conn tongban_federation (\d+);", template.read_text("utf-8"))
    assert len(caps) == 2  # envelopes and blobs
    assert all(int(cap) >= 2 * (FederationSettings().window + 4) for cap in caps)


@pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("openssl") is None,
    reason="needs nginx and openssl (the topology of docker/compose.yaml)",
)
async def test_nginx_refuses_envelopes_past_the_cap_from_one_address_with_a_retryable_503(
    tmp_path: Path,
) -> None:
    """A partner holding the cap's worth of envelope requests open (here 3, headers sent, body
    never): one more from its address is refused at once with 503, which a sender retries
    (never a dead letter); once they end, requests go through again."""
    certs = tmp_path / "certs"
    make_certs(certs)
    proxy_port, http_port = free_port(), free_port()
    dead_replicas = [free_port(), free_port()]
    conf = nginx_config(
        tmp_path / "nginx", certs, proxy_port, http_port, dead_replicas, federation_cap=3
    )
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path / "nginx"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    context = _ca_context(certs)
    head = (
        b"POST /federation/v1/envelopes HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/jose\r\nContent-Length: 5\r\n\r\n"
    )

    async def status_of_a_whole_request() -> int:
        reader, writer = await asyncio.open_connection(
            "localhost", proxy_port, ssl=context, server_hostname="localhost"
        )
        try:
            writer.write(head + b"a.b.c")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 10)
            return int(line.split()[1])
        finally:
            writer.close()

    held: list[asyncio.StreamWriter] = []
    try:

        async def listening() -> bool:
            try:
                await status_of_a_whole_request()
            except OSError:
                return False
            return True

        await wait_until(listening, timeout=20)
        # Through to the (dead) replicas: nginx's own answer for them is 502, not the cap.
        assert await status_of_a_whole_request() == 502
        for _ in range(3):
            _reader, writer = await asyncio.open_connection(
                "localhost", proxy_port, ssl=context, server_hostname="localhost"
            )
            writer.write(head)  # and never the body
            await writer.drain()
            held.append(writer)
        statuses: list[int] = []

        async def refused() -> bool:
            statuses.append(await status_of_a_whole_request())
            return statuses[-1] == 503

        await wait_until(refused, timeout=10)
        assert set(statuses) <= {502, 503}
        for writer in held:
            writer.close()
        held.clear()

        async def through_again() -> bool:
            return await status_of_a_whole_request() == 502

        await wait_until(through_again, timeout=10)
    finally:
        for writer in held:
            writer.close()
        nginx.terminate()
        nginx.wait(timeout=10)
