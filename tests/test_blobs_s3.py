"""The blob store behind its interface: the shared folder and S3-compatible object storage.

The S3 peer is moto's standalone server (``moto.server.ThreadedMotoServer``) on 127.0.0.1 and a
free port: real HTTP over real sockets, signed with SigV4 by aiobotocore, as against MinIO or a
cloud's object storage (no S3 server is packaged for Debian; see docs/operations.md). The same
behaviour tests run against both backends; then two nodes deliver a blob through S3, a node
with S3 blobs is backed up and restored, and `tongban doctor` checks the bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from node.cli import main as cli
from node.config import BlobSettings, ConfigError, NodeConfig
from node.doctor import run_checks
from node.http_errors import error_middleware
from node.provisioning import init_node, link_all
from node.storage.blobs import (
    CHUNK,
    BlobStore,
    BlobStoreUnavailable,
    FolderBlobStore,
    S3BlobStore,
    blob_response,
    check_digest,
    open_blob_store,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import example_body
from tests.support.databases import DatabaseFactory
from tests.support.nodes import FAST_FEDERATION, RunningNode, free_port
from tests.support.waiting import wait_until

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 protocol peer on a real socket for the tests of this module."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_credentials(tmp_path: Path) -> Path:
    """Credentials the way an operator gives them: a 0600 file named in tongban.toml."""
    path = tmp_path / "s3-credentials.toml"
    path.write_text('access_key_id = "tongban-test"\nsecret_access_key = "not-a-secret"\n')
    path.chmod(0o600)
    return path


async def new_bucket(endpoint: str, credentials: Path) -> str:
    bucket = f"tongban-{uuid.uuid4().hex[:12]}"
    store = S3BlobStore(
        BlobSettings(
            backend="s3", endpoint_url=endpoint, bucket=bucket, credentials_file=str(credentials)
        ),
        spool_dir=credentials.parent / "spool-create",
    )
    try:
        await (await store._s3()).create_bucket(Bucket=bucket)
    finally:
        await store.close()
    return bucket


def s3_toml(endpoint: str, bucket: str, credentials: Path, prefix: str) -> str:
    return (
        f'\n[blobs]\nbackend = "s3"\nendpoint_url = "{endpoint}"\nbucket = "{bucket}"\n'
        f'prefix = "{prefix}"\ncredentials_file = "{credentials}"\n'
    )


@pytest.fixture(params=["folder", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_credentials: Path
) -> AsyncIterator[BlobStore]:
    if request.param == "folder":
        made: BlobStore = FolderBlobStore(tmp_path / "blobs")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = await new_bucket(endpoint, s3_credentials)
        made = S3BlobStore(
            BlobSettings(
                backend="s3",
                endpoint_url=endpoint,
                bucket=bucket,
                prefix="430400/",
                credentials_file=str(s3_credentials),
            ),
            spool_dir=tmp_path / "blobs" / "tmp",
        )
    await made.start()
    yield made
    await made.close()


async def chunked(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def everything(store: BlobStore) -> list[tuple[str, int]]:
    return [entry async for entry in store.list_blobs()]


def leftovers(tmp_path: Path) -> list[Path]:
    spool = tmp_path / "blobs" / "tmp"
    return list(spool.iterdir()) if spool.is_dir() else []


async def test_round_trip(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(1_000_000)
    sha = hashlib.sha256(data).hexdigest()
    assert await store.size(sha) is None and not await store.has(sha)
    got = await store.put_stream(chunked(data), max_bytes=len(data), expected=sha)
    assert got == (sha, len(data), True)
    assert await store.size(sha) == len(data) and await store.has(sha)
    assert b"".join([c async for c in store.read_chunks(sha)]) == data
    assert b"".join([c async for c in store.read_chunks(sha, 10, 5000)]) == data[10:5000]
    assert b"".join([c async for c in store.read_chunks(sha, 999_990)]) == data[999_990:]
    assert await everything(store) == [(sha, len(data))]
    small = await store.put_bytes(b"manifest")
    assert await store.read_bytes(small) == b"manifest"
    with pytest.raises(ProtocolError) as exc:
        await store.read_bytes(sha, max_bytes=1000)
    assert exc.value.code is ErrorCode.BLOB_TOO_LARGE
    assert leftovers(tmp_path) == []


async def test_digest_mismatch_leaves_nothing(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    claimed = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ProtocolError) as exc:
        await store.put_stream(chunked(data), max_bytes=10**7, expected=claimed)
    assert exc.value.code is ErrorCode.BLOB_DIGEST_MISMATCH
    assert not await store.has(claimed)
    assert not await store.has(hashlib.sha256(data).hexdigest())
    assert await everything(store) == []
    assert leftovers(tmp_path) == []
    if isinstance(store, S3BlobStore):  # not even under another key
        listed = await (await store._s3()).list_objects_v2(Bucket=store.bucket)
        assert listed.get("KeyCount", 0) == 0


async def test_too_large_is_refused_and_nothing_is_left(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(500_000)
    with pytest.raises(ProtocolError) as exc:
        await store.put_stream(chunked(data), max_bytes=499_999)
    assert exc.value.code is ErrorCode.BLOB_TOO_LARGE
    assert not await store.has(hashlib.sha256(data).hexdigest())
    assert await everything(store) == []
    assert leftovers(tmp_path) == []


async def test_same_bytes_are_stored_once(store: BlobStore) -> None:
    data = os.urandom(200_000)
    sha, size, created = await store.put_stream(chunked(data), max_bytes=10**6)
    assert created
    again = await store.put_stream(chunked(data, 7_000), max_bytes=10**6, expected=sha)
    assert again == (sha, size, False)
    assert await store.put_bytes(data) == sha
    assert await everything(store) == [(sha, size)]


async def test_reads_stream_in_bounded_chunks(store: BlobStore) -> None:
    data = os.urandom(5 * CHUNK + 123)
    sha = await store.put_bytes(data)
    chunks = [c async for c in store.read_chunks(sha)]
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= CHUNK
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == sha


async def test_missing_blob_and_malformed_digest(store: BlobStore) -> None:
    missing = "ab" * 32
    assert await store.size(missing) is None
    with pytest.raises(FileNotFoundError):
        async for _chunk in store.read_chunks(missing):
            pass
    for bad in ("../../etc/passwd", "AB" * 32, "ab" * 31):
        with pytest.raises(ProtocolError) as exc:
            await store.has(bad)
        assert exc.value.code is ErrorCode.BAD_PATH
        with pytest.raises(ProtocolError):
            check_digest(bad)
    assert check_digest(missing) == missing


async def test_s3_objects_are_content_addressed_under_the_prefix(
    s3_endpoint: str, s3_credentials: Path, tmp_path: Path
) -> None:
    bucket = await new_bucket(s3_endpoint, s3_credentials)
    settings = BlobSettings(
        backend="s3",
        endpoint_url=s3_endpoint,
        bucket=bucket,
        prefix="370500/",
        credentials_file=str(s3_credentials),
    )
    store = S3BlobStore(settings, spool_dir=tmp_path / "spool")
    other = S3BlobStore(
        BlobSettings(**{**settings.__dict__, "prefix": "430400/"}), spool_dir=tmp_path / "spool"
    )
    try:
        sha = await store.put_bytes(b"a decision document")
        s3 = await store._s3()
        listed = await s3.list_objects_v2(Bucket=bucket)
        assert [o["Key"] for o in listed["Contents"]] == [f"370500/{sha[:2]}/{sha[2:4]}/{sha}"]
        # A foreign object under the prefix is not a blob; another prefix is another store.
        await s3.put_object(Bucket=bucket, Key="370500/notes.txt", Body=b"x")
        assert await everything(store) == [(sha, 19)]
        assert await everything(other) == [] and not await other.has(sha)
        assert "reachable" in await store.check()
    finally:
        await store.close()
        await other.close()


async def test_an_unreachable_object_store_answers_503_with_a_stable_code(
    s3_credentials: Path, tmp_path: Path, aiohttp_client: Any
) -> None:
    """Down, not missing: a partner's upload or a browser's download is told to come back
    (503 ``blob_store_unavailable``, which a sender retries), never "no such blob"."""
    store = S3BlobStore(
        BlobSettings(
            backend="s3",
            endpoint_url=f"http://127.0.0.1:{free_port()}",  # nobody listens there
            bucket="tongban",
            credentials_file=str(s3_credentials),
            timeout=2.0,
        ),
        spool_dir=tmp_path / "spool",
    )
    sha = hashlib.sha256(b"x").hexdigest()

    async def handler(request: web.Request) -> web.StreamResponse:
        await store.size(sha)
        raise AssertionError("not reached")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/blob", handler)
    client = await aiohttp_client(app)
    try:
        with pytest.raises(BlobStoreUnavailable):
            await store.put_bytes(b"x")
        answer = await client.get("/blob")
        assert answer.status == 503
        assert (await answer.json())["error"] == "blob_store_unavailable"
        assert list((tmp_path / "spool").iterdir()) == []  # the spooled upload is gone
    finally:
        await store.close()


def test_blobs_settings_are_checked(tmp_path: Path) -> None:
    base = {"region": "430400", "name": "衡阳市", "url": "https://x"}
    config = NodeConfig.from_dict(tmp_path, base)
    assert config.blobs.backend == "folder" and config.blob_dir == tmp_path / "blobs"
    assert isinstance(open_blob_store(config), FolderBlobStore)
    s3 = NodeConfig.from_dict(
        tmp_path,
        {**base, "blobs": {"backend": "s3", "bucket": "b-1", "credentials_file": "c.toml"}},
    )
    assert s3.blobs.credentials_file == str(tmp_path / "c.toml")
    assert isinstance(open_blob_store(s3), S3BlobStore)
    for blobs, message in [
        ({"backend": "s3", "bucket": "b-1", "secret_access_key": "x"}, "secrets do not go"),
        ({"backend": "s3", "bucket": "b-1", "endpoint": "x"}, "unknown \\[blobs\\]"),
        ({"backend": "s3"}, "needs bucket"),
        ({"backend": "nfs"}, "use one of folder, s3"),
        ({"backend": "s3", "bucket": "b-1", "timeout": "30"}, "a number above 0"),
        ({"backend": "s3", "bucket": "b-1", "timeout": 0}, "a number above 0"),
        ({"backend": "s3", "bucket": "b-1", "prefix": 430400}, "prefix: a string"),
    ]:
        with pytest.raises(ConfigError, match=message):
            NodeConfig.from_dict(tmp_path, {**base, "blobs": blobs})


# -- nodes with S3 blobs ------------------------------------------------------------------------


async def s3_nodes(
    tmp_path: Path,
    databases: DatabaseFactory,
    endpoint: str,
    credentials: Path,
    regions: list[tuple[str, str]],
) -> list[NodeConfig]:
    bucket = await new_bucket(endpoint, credentials)  # one bucket, a prefix per region
    configs = []
    for region, name in regions:
        configs.append(
            await init_node(
                tmp_path / region,
                region=region,
                name=name,
                port=free_port(),
                database_url=await databases.new_url(region),
                extra_toml=FAST_FEDERATION + s3_toml(endpoint, bucket, credentials, f"{region}/"),
            )
        )
    await link_all(configs)
    return configs


async def test_two_nodes_deliver_an_envelope_with_a_blob_through_s3(
    tmp_path: Path, databases: DatabaseFactory, s3_endpoint: str, s3_credentials: Path
) -> None:
    configs = await s3_nodes(
        tmp_path,
        databases,
        s3_endpoint,
        s3_credentials,
        [("430523", "邵阳县"), ("430400", "衡阳市")],
    )
    shaoyang, hengyang = [await RunningNode(c).start() for c in configs]
    try:
        assert isinstance(shaoyang.fed.blobs, S3BlobStore)
        data = os.urandom(700_000)
        sha = await shaoyang.fed.blobs.put_bytes(data)
        blob = {"sha256": sha, "size": len(data), "media_type": "application/pdf", "name": "a.pdf"}
        body = example_body("case.progress")[0]
        await shaoyang.send("430400", "case.progress", "XT-S3", body, blobs=[blob])

        async def arrived() -> bool:
            return await hengyang.fed.blobs.has(sha)

        await wait_until(arrived, timeout=30)
        got = b"".join([c async for c in hengyang.fed.blobs.read_chunks(sha)])
        assert got == data
        # Nothing went to the local folders: the blob dirs hold only the (empty) spool.
        for config in configs:
            assert [p.name for p in config.blob_dir.iterdir()] == ["tmp"]
            assert list((config.blob_dir / "tmp").iterdir()) == []
        checks = {c.name: c for c in await run_checks(hengyang.config)}
        assert checks["blobs"].level == "ok" and "reachable" in checks["blobs"].message
    finally:
        await shaoyang.stop()
        await hengyang.stop()


async def test_backup_and_restore_with_s3_blobs(
    tmp_path: Path,
    databases: DatabaseFactory,
    s3_endpoint: str,
    s3_credentials: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    [config] = await s3_nodes(
        tmp_path, databases, s3_endpoint, s3_credentials, [("430400", "衡阳市")]
    )
    store = open_blob_store(config)
    try:
        blobs = {await store.put_bytes(os.urandom(n)): n for n in (10, 300_000, 2 * CHUNK)}
    finally:
        await store.close()
    archive = tmp_path / "backup.tar.gz"
    assert (
        await asyncio.to_thread(cli, ["backup", "--dir", str(config.dir), "--out", str(archive)])
        == 0
    )

    # Into a fresh node directory whose config names an empty prefix of the same bucket.
    target = tmp_path / "restored"
    target.mkdir()
    url = await databases.new_url("restored")
    text = (config.dir / "tongban.toml").read_text(encoding="utf-8")
    text = text.replace('prefix = "430400/"', 'prefix = "restored/"')
    text = "\n".join(
        line if not line.startswith("database_url") else f'database_url = "{url}"'
        for line in text.splitlines()
    )
    (target / "tongban.toml").write_text(text + "\n", encoding="utf-8")
    assert await asyncio.to_thread(cli, ["restore", str(archive), "--dir", str(target)]) == 0
    restored = NodeConfig.load(target)
    assert restored.blobs.prefix == "restored/"
    copy = open_blob_store(restored)
    try:
        assert await everything(copy) == sorted(blobs.items())
        for sha in blobs:
            got = b"".join([c async for c in copy.read_chunks(sha)])
            assert hashlib.sha256(got).hexdigest() == sha
    finally:
        await copy.close()
    # Again into the same (now full) bucket prefix: refused, nothing changed.
    again = tmp_path / "again"
    again.mkdir()
    url = await databases.new_url("again")
    again_text = (target / "tongban.toml").read_text(encoding="utf-8")
    (again / "tongban.toml").write_text(
        again_text.replace(restored.database_url, url), encoding="utf-8"
    )
    capsys.readouterr()
    assert await asyncio.to_thread(cli, ["restore", str(archive), "--dir", str(again)]) == 1
    assert "blob_store_not_empty" in capsys.readouterr().err


async def test_doctor_fails_an_unreachable_bucket(
    tmp_path: Path, databases: DatabaseFactory, s3_endpoint: str, s3_credentials: Path
) -> None:
    [config] = await s3_nodes(
        tmp_path, databases, s3_endpoint, s3_credentials, [("430400", "衡阳市")]
    )
    toml = config.dir / "tongban.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace(f'bucket = "{config.blobs.bucket}"', 'bucket = "no-such-bucket"'))
    checks = {c.name: c for c in await run_checks(NodeConfig.load(config.dir))}
    assert checks["blobs"].level == "fail" and "no-such-bucket" in checks["blobs"].message
    s3_credentials.chmod(0o644)
    checks = {c.name: c for c in await run_checks(config)}
    assert checks["blobs"].level == "fail" and "chmod 600" in checks["blobs"].message


async def test_http_response_streams_with_ranges(store: BlobStore, aiohttp_client: Any) -> None:
    """What the files API and the inspection recordings serve from either store."""
    data = os.urandom(3 * CHUNK + 17)
    sha = await store.put_bytes(data)

    async def handler(request: web.Request) -> web.StreamResponse:
        size = await store.size(sha)
        assert size is not None
        return await blob_response(
            request, store, sha, size=size, headers={"Content-Type": "video/webm"}
        )

    app = web.Application()
    app.router.add_get("/blob", handler)
    client = await aiohttp_client(app)
    whole = await client.get("/blob")
    assert whole.status == 200 and await whole.read() == data
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = await client.get("/blob", headers={"Range": "bytes=100-299"})
    assert part.status == 206 and await part.read() == data[100:300]
    assert part.headers["Content-Range"] == f"bytes 100-299/{len(data)}"
    tail = await client.get("/blob", headers={"Range": "bytes=-10"})
    assert tail.status == 206 and await tail.read() == data[-10:]
    beyond = await client.get("/blob", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status == 416
    assert (await beyond.json())["error"] == "range_not_satisfiable"
    assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"
    # An invalid range is ignored: the whole blob.
    backwards = await client.get("/blob", headers={"Range": "bytes=300-100"})
    assert backwards.status == 200 and await backwards.read() == data
    # The digest is the ETag; If-Range with another validator gets the whole blob.
    assert whole.headers["ETag"] == f'"{sha}"'
    same = await client.get("/blob", headers={"Range": "bytes=0-9", "If-Range": f'"{sha}"'})
    assert same.status == 206 and await same.read() == data[:10]
    other = await client.get("/blob", headers={"Range": "bytes=0-9", "If-Range": '"x"'})
    assert other.status == 200 and await other.read() == data
    # HEAD: the headers only, and the connection stays usable for the next request.
    head = await client.head("/blob")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
    assert await head.read() == b""
    again = await client.get("/blob", headers={"Range": "bytes=0-3"})
    assert again.status == 206 and await again.read() == data[:4]
