"""The node API refuses every kind of bad input with its stable code, stores nothing but a
rejection row, and keeps serving."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from node.federation.models import inbound_envelopes, rejections
from node.federation.partners import Partner, load_partners, render_partners
from protocol.envelope import new_claims
from protocol.keys import generate_private_key, key_id, public_raw
from protocol.messages import example_body
from protocol.receipt import verify_receipt
from protocol.request_token import sign_request_token
from tests.support.databases import DatabaseFactory
from tests.support.forge import hs256_with_public_key, jws, jws_raw
from tests.support.nodes import RunningNode, make_configs

JOSE = {"Content-Type": "application/jose"}
BODY = example_body("case.progress")[0]


@pytest.fixture
async def pair(tmp_path: Path, databases: DatabaseFactory) -> AsyncIterator[list[RunningNode]]:
    configs = await make_configs(tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")])
    for config in configs:
        backdate_partner_keys(config.partners_file, days=30)
    nodes = [await RunningNode(c).start() for c in configs]
    yield nodes
    for node in nodes:
        await node.stop()


def backdate_partner_keys(path: Path, days: int) -> None:
    """As an admin would: trust partners' keys from an earlier date (old keys, fresh test)."""
    partners = load_partners(path)
    moved = [
        Partner(
            p.region,
            p.name,
            p.url,
            tuple(
                dataclasses.replace(k, not_before=k.not_before - timedelta(days=days))
                for k in p.keys
            ),
        )
        for p in partners.values()
    ]
    path.write_text(render_partners(moved), encoding="utf-8")


async def rows(node: RunningNode, table: Any) -> int:
    async with node.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def claims(**changes: Any) -> dict[str, Any]:
    base = new_claims(
        iss="430523",
        aud="430400",
        typ="case.progress",
        xt="XT-1",
        seq=1,
        body=BODY,
        now=time.time(),
    )
    base.update(changes)
    return base


def signed(node: RunningNode, header: dict[str, Any] | None = None, **changes: Any) -> str:
    identity = node.fed.identity
    head = {"alg": "EdDSA", "typ": "tongban-envelope+jwt", "kid": identity.kid}
    head.update(header or {})
    return jws(head, claims(**changes), identity.private_key)


Case = Callable[[RunningNode], bytes | str]

STRANGER = generate_private_key()
STRANGER_KID = key_id("430523", STRANGER.public_key())


def _nested(depth: int) -> dict[str, Any]:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_ENVELOPES: dict[str, tuple[Case, int, str]] = {
    "bad signature": (
        lambda n: signed(n)[:-6] + ("AAAAAA" if not signed(n).endswith("AAAAAA") else "BBBBBB"),
        401,
        "bad_signature",
    ),
    "payload changed after signing": (
        lambda n: _swap_payload(signed(n), claims(xt="XT-OTHER")),
        401,
        "bad_signature",
    ),
    "alg none": (
        lambda n: jws(
            {"alg": "none", "typ": "tongban-envelope+jwt", "kid": n.fed.identity.kid},
            claims(),
            None,
        ),
        401,
        "alg_not_allowed",
    ),
    "HS256 keyed with the public key": (
        lambda n: hs256_with_public_key(
            {"alg": "HS256", "typ": "tongban-envelope+jwt", "kid": n.fed.identity.kid},
            claims(),
            public_raw(n.fed.identity.private_key.public_key()),
        ),
        401,
        "alg_not_allowed",
    ),
    "unknown kid": (
        lambda n: jws(
            {"alg": "EdDSA", "typ": "tongban-envelope+jwt", "kid": STRANGER_KID}, claims(), STRANGER
        ),
        401,
        "unknown_kid",
    ),
    "unknown issuer": (
        lambda n: jws(
            {
                "alg": "EdDSA",
                "typ": "tongban-envelope+jwt",
                "kid": key_id("110000", STRANGER.public_key()),
            },
            claims(iss="110000"),
            STRANGER,
        ),
        401,
        "unknown_issuer",
    ),
    "signed before the key was valid": (
        lambda n: signed(n, iat=int(time.time()) - 86400 * 40, exp=int(time.time()) - 86400 * 39),
        401,
        "key_not_valid",
    ),
    "aud not this region": (lambda n: signed(n, aud="370500"), 403, "wrong_audience"),
    "expired": (
        lambda n: signed(n, iat=int(time.time()) - 1000, exp=int(time.time()) - 400),
        401,
        "expired",
    ),
    "iat in the future": (
        lambda n: signed(n, iat=int(time.time()) + 400, exp=int(time.time()) + 4000),
        401,
        "not_yet_valid",
    ),
    "malformed JWS": (lambda n: b"not-a-jws", 400, "malformed_jws"),
    "bad base64": (lambda n: b"eyJ*.eyJ.AAAA", 400, "malformed_jws"),
    "invalid UTF-8": (
        lambda n: jws_raw(
            b'{"alg":"EdDSA","typ":"tongban-envelope+jwt","kid":"\xff"}', b"{}", None
        ),
        400,
        "invalid_encoding",
    ),
    "non-object JSON": (
        lambda n: jws_raw(b'["EdDSA"]', b"{}", None),
        400,
        "invalid_json",
    ),
    "deeply nested JSON": (lambda n: signed(n, body=_nested(200)), 400, "json_too_deep"),
    "body not matching its schema": (
        lambda n: signed(n, body={"unexpected": 1}),
        422,
        "schema_invalid",
    ),
    "unknown message type": (lambda n: signed(n, typ="case.teleport"), 400, "unknown_message_type"),
    "over 1 MiB": (
        lambda n: signed(n, body={**BODY, "note": "x" * (1024 * 1024)}),
        413,
        "too_large",
    ),
}


def _swap_payload(token: str, new_claims_: dict[str, Any]) -> str:
    import base64
    import json

    head, _payload, sig = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(new_claims_).encode()).rstrip(b"=").decode()
    return f"{head}.{payload}.{sig}"


@pytest.mark.parametrize("name", list(BAD_ENVELOPES))
async def test_bad_envelope_is_refused_with_its_code_and_nothing_is_stored(
    pair: list[RunningNode], name: str
) -> None:
    shaoyang, hengyang = pair
    make, status, code = BAD_ENVELOPES[name]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{hengyang.url}/federation/v1/envelopes", data=make(shaoyang), headers=JOSE
        ) as resp,
    ):
        assert resp.status == status
        answer = await resp.json()
    assert answer["error"] == code
    assert isinstance(answer["detail"], str)
    assert await rows(hengyang, inbound_envelopes) == 0
    async with hengyang.db.read() as conn:
        logged = (await conn.execute(select(rejections.c.code))).scalars().all()
    assert logged == [code]


async def test_wrong_content_type_is_refused(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = pair
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{hengyang.url}/federation/v1/envelopes",
            data=signed(shaoyang),
            headers={"Content-Type": "text/plain"},
        ) as resp,
    ):
        assert resp.status == 415
        assert (await resp.json())["error"] == "unsupported_media_type"
    assert await rows(hengyang, inbound_envelopes) == 0


@pytest.mark.parametrize(
    "path", ["/federation/v1/blobs/../../etc/passwd", "/federation/v1/%2e%2e/x", "/a/../metrics"]
)
async def test_path_with_dot_segments_is_refused(pair: list[RunningNode], path: str) -> None:
    _shaoyang, hengyang = pair
    reader, writer = await _open(hengyang)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    assert response.startswith("HTTP/1.1 400")
    assert '"bad_path"' in response


async def _open(node: RunningNode) -> Any:
    import asyncio

    return await asyncio.open_connection(node.config.host, node.config.port)


# -- blobs ---------------------------------------------------------------------------------


def token_for(node: RunningNode, sha256: str, aud: str = "430400") -> str:
    identity = node.fed.identity
    return sign_request_token(
        iss=identity.region,
        aud=aud,
        sha256=sha256,
        now=time.time(),
        key=identity.private_key,
        kid=identity.kid,
    )


async def put(
    node: RunningNode, sha256: str, data: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{node.url}/federation/v1/blobs/{sha256}", data=data, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_blob_upload_is_stored_by_digest_and_idempotent(pair: list[RunningNode]) -> None:
    shaoyang, hengyang = pair
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    auth = {"Authorization": f"Bearer {token_for(shaoyang, sha)}"}
    assert (await put(hengyang, sha, data, auth))[0] == 201
    assert (await put(hengyang, sha, data, auth))[0] == 200
    assert hashlib.sha256(hengyang.fed.blobs.path(sha).read_bytes()).hexdigest() == sha


@pytest.mark.parametrize(
    "name",
    [
        "no token",
        "token for another blob",
        "token for another node",
        "token from a stranger",
        "digest mismatch",
        "too large",
    ],
)
async def test_bad_blob_upload_is_refused_and_nothing_is_kept(
    pair: list[RunningNode], name: str
) -> None:
    shaoyang, hengyang = pair
    data = os.urandom(4096)
    sha = hashlib.sha256(data).hexdigest()
    other = hashlib.sha256(b"other").hexdigest()
    headers = {"Authorization": f"Bearer {token_for(shaoyang, sha)}"}
    body = data
    expected = {
        "no token": (401, "token_missing"),
        "token for another blob": (401, "token_invalid"),
        "token for another node": (401, "token_invalid"),
        "token from a stranger": (401, "token_invalid"),
        "digest mismatch": (422, "blob_digest_mismatch"),
        "too large": (413, "blob_too_large"),
    }[name]
    if name == "no token":
        headers = {}
    elif name == "token for another blob":
        headers = {"Authorization": f"Bearer {token_for(shaoyang, other)}"}
    elif name == "token for another node":
        headers = {"Authorization": f"Bearer {token_for(shaoyang, sha, aud='370500')}"}
    elif name == "token from a stranger":
        stranger = sign_request_token(
            iss="430523", aud="430400", sha256=sha, now=time.time(), key=STRANGER, kid=STRANGER_KID
        )
        headers = {"Authorization": f"Bearer {stranger}"}
    elif name == "digest mismatch":
        body = data + b"!"
    elif name == "too large":
        limit = hengyang.config.federation.max_blob_bytes
        body = b"\0" * (limit + 1)
        sha = hashlib.sha256(body).hexdigest()
        headers = {"Authorization": f"Bearer {token_for(shaoyang, sha)}"}
    status, answer = await put(hengyang, sha, body, headers)
    assert (status, answer["error"]) == expected
    assert not await hengyang.fed.blobs.has(sha)
    assert list((hengyang.config.blob_dir / "tmp").iterdir()) == []


# -- envelope bodies that arrive in pieces -----------------------------------------------------


def sized_envelope(node: RunningNode, size: int, **changes: Any) -> bytes:
    """A valid signed envelope of exactly ``size`` bytes: JSON whitespace pads the payload (and,
    for a base64 length that cannot occur, the header)."""
    import json

    from protocol.envelope import MAX_ENVELOPE_BYTES
    from tests.support.forge import b64, jws_raw

    identity = node.fed.identity
    header = {"alg": "EdDSA", "typ": "tongban-envelope+jwt", "kid": identity.kid}
    payload = json.dumps(claims(**changes), separators=(",", ":"))
    assert size <= MAX_ENVELOPE_BYTES + 8
    for head_pad in range(4):
        head = "{" + " " * head_pad + json.dumps(header, separators=(",", ":"))[1:]
        room = size - len(b64(head.encode())) - 2 - 86  # two dots, a 64-byte signature
        spaces = room * 3 // 4 - len(payload.encode())
        for extra in (-1, 0, 1):
            padded = "{" + " " * (spaces + extra) + payload[1:]
            if len(b64(padded.encode())) == room:
                token = jws_raw(head.encode(), padded.encode(), identity.private_key)
                assert len(token) == size
                return token.encode("ascii")
    raise AssertionError(f"no padding gives {size} bytes")


async def test_envelope_just_under_1_mib_sent_in_slow_chunks_gets_its_receipt(
    pair: list[RunningNode],
) -> None:
    """The body is read up to the limit, however it arrives: a sender's TCP writes, proxies
    and the network cut it anywhere. Chunked, with no Content-Length, in 64 KiB pieces."""
    import asyncio

    from protocol.envelope import MAX_ENVELOPE_BYTES

    shaoyang, hengyang = pair
    token = sized_envelope(shaoyang, MAX_ENVELOPE_BYTES - 1, xt="XT-BIG")

    async def slowly() -> AsyncIterator[bytes]:
        for start in range(0, len(token), 64 * 1024):
            yield token[start : start + 64 * 1024]
            await asyncio.sleep(0.01)

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{hengyang.url}/federation/v1/envelopes", data=slowly(), headers=JOSE) as resp,
    ):
        assert resp.status == 200, await resp.text()
        receipt = await resp.text()
    verified = verify_receipt(
        receipt,
        shaoyang.fed.trust.keys,
        sender="430523",
        receiver="430400",
        ref=json_claims(token)["jti"],
        digest=hashlib.sha256(token).hexdigest(),
    )
    assert verified.iss == "430400"
    assert await rows(hengyang, inbound_envelopes) == 1
    assert await rows(hengyang, rejections) == 0


async def test_small_envelope_in_two_tcp_writes_gets_its_receipt(pair: list[RunningNode]) -> None:
    """With Content-Length, the second half arriving after a pause."""
    import asyncio

    shaoyang, hengyang = pair
    token = signed(shaoyang, xt="XT-TWO").encode()
    reader, writer = await _open(hengyang)
    writer.write(
        b"POST /federation/v1/envelopes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/jose\r\n"
        + f"Content-Length: {len(token)}\r\n\r\n".encode()
        + token[:100]
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(token[100:])
    await writer.drain()
    response = await reader.read()
    writer.close()
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    assert await rows(hengyang, inbound_envelopes) == 1


async def test_envelope_just_over_1_mib_in_chunks_is_too_large(pair: list[RunningNode]) -> None:
    """Chunked (no Content-Length to refuse early): the reader stops one byte past the limit."""
    import asyncio

    from protocol.envelope import MAX_ENVELOPE_BYTES

    shaoyang, hengyang = pair
    token = sized_envelope(shaoyang, MAX_ENVELOPE_BYTES + 1, xt="XT-HUGE")

    async def slowly() -> AsyncIterator[bytes]:
        for start in range(0, len(token), 128 * 1024):
            yield token[start : start + 128 * 1024]
            await asyncio.sleep(0.01)

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{hengyang.url}/federation/v1/envelopes", data=slowly(), headers=JOSE) as resp,
    ):
        assert resp.status == 413
        assert (await resp.json())["error"] == "too_large"
    assert await rows(hengyang, inbound_envelopes) == 0


def json_claims(token: bytes) -> dict[str, Any]:
    import base64
    import json

    payload = token.split(b".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))))


# -- rejections: counted, not one row each -------------------------------------------------------


async def test_a_thousand_bad_envelopes_leave_a_few_counted_rows(pair: list[RunningNode]) -> None:
    """Unauthenticated garbage costs the database one row per (source, endpoint, code, hour),
    with a count and when it was last seen, not a row per request; old hours are pruned."""
    import asyncio

    from sqlalchemy import insert as sql_insert

    shaoyang, hengyang = pair
    # An aggregate from long ago: pruned by the next rejection.
    old_hour = (int(time.time()) // 3600 - 24 * 40) * 3600
    async with hengyang.db.write() as conn:
        await conn.execute(
            sql_insert(rejections).values(
                hour=old_hour,
                source="192.0.2.1",
                endpoint="envelopes",
                code="bad_signature",
                count=5,
                first_at=old_hour,
                last_at=old_hour + 10,
                detail="old",
            )
        )
    forged = signed(shaoyang)[:-6] + "AAAAAA"
    bodies = [b"not-a-jws"] * 600 + [forged.encode()] * 400
    gate = asyncio.Semaphore(16)
    started = time.time()

    async def send(http: aiohttp.ClientSession, body: bytes) -> int:
        async with (
            gate,
            http.post(f"{hengyang.url}/federation/v1/envelopes", data=body, headers=JOSE) as resp,
        ):
            await resp.read()
            return resp.status

    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(send(http, body) for body in bodies))
    assert sorted(set(statuses)) == [400, 401]
    async with hengyang.db.read() as conn:
        found = (await conn.execute(select(rejections))).all()
    by_code: dict[str, int] = {}
    for row in found:
        assert row.source == "127.0.0.1"
        assert row.endpoint == "envelopes"
        assert row.first_at <= row.last_at
        assert started - 1 <= row.last_at <= time.time() + 1
        by_code[row.code] = by_code.get(row.code, 0) + row.count
    assert by_code == {"malformed_jws": 600, "bad_signature": 400}
    # One row per code, or two if the test ran across the turn of an hour.
    assert 2 <= len(found) <= 4
    assert await rows(hengyang, inbound_envelopes) == 0


async def test_migration_folds_old_rejection_rows_into_counts(databases: DatabaseFactory) -> None:
    """A database from before the counts: its rows become one aggregate per (hour, source,
    endpoint, code), and a downgrade gives the old table back."""
    from alembic import command
    from sqlalchemy import text

    from node.storage.database import Database
    from node.storage.migrate import alembic_config, upgrade

    db = Database(await databases.new_url("migrate"))

    def to(revision: str, down: bool = False) -> Any:
        def run(sync_conn: Any) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = sync_conn
            (command.downgrade if down else command.upgrade)(cfg, revision)

        return run

    try:
        async with db.write() as conn:
            await conn.run_sync(to("0009_case_pause_start"))
            hour = 1_782_864_000  # a whole hour
            old = [
                (hour + 5, "envelopes", "bad_signature", "127.0.0.1", "430523"),
                (hour + 50, "envelopes", "bad_signature", "127.0.0.1", "430523"),
                (hour + 3599, "envelopes", "bad_signature", "127.0.0.1", None),
                (hour + 3600, "envelopes", "bad_signature", "127.0.0.1", None),
                (hour + 7, "blobs", "token_invalid", None, "430523"),
            ]
            for at, endpoint, code, remote, iss in old:
                await conn.execute(
                    text(
                        "INSERT INTO rejections (at, endpoint, code, detail, remote, iss)"
                        " VALUES (:at, :endpoint, :code, 'x', :remote, :iss)"
                    ),
                    {"at": at, "endpoint": endpoint, "code": code, "remote": remote, "iss": iss},
                )
        await upgrade(db)
        async with db.read() as conn:
            found = (
                await conn.execute(
                    select(
                        rejections.c.hour,
                        rejections.c.source,
                        rejections.c.endpoint,
                        rejections.c.count,
                        rejections.c.first_at,
                        rejections.c.last_at,
                    ).order_by(rejections.c.hour, rejections.c.endpoint)
                )
            ).all()
        assert [tuple(r) for r in found] == [
            (hour, "iss:430523", "blobs", 1, hour + 7, hour + 7),
            (hour, "127.0.0.1", "envelopes", 3, hour + 5, hour + 3599),
            (hour + 3600, "127.0.0.1", "envelopes", 1, hour + 3600, hour + 3600),
        ]
        async with db.write() as conn:
            await conn.run_sync(to("0009_case_pause_start", down=True))
        async with db.read() as conn:
            back = (await conn.execute(text("SELECT endpoint, remote FROM rejections"))).all()
        assert sorted(tuple(r) for r in back) == [
            ("blobs", None),
            ("envelopes", "127.0.0.1"),
            ("envelopes", "127.0.0.1"),
        ]
        await upgrade(db)  # and up again, names and sequences intact
    finally:
        await db.dispose()
