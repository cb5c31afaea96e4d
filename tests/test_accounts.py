"""Staff accounts: login, lockout, tokens (expiry, region, forgery), roles, the users API,
the `tongban users` command, the rate limiter, and how passwords are stored.

The node here is only the accounts area (its routes, the error middleware, config and
database), so these tests do not depend on the other areas; tests/test_accounts_node.py runs
the whole node.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import secrets
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher
from sqlalchemy import select

from node.accounts import service
from node.accounts.auth import ROLES, Staff, authenticate, require_role
from node.accounts.models import node_secrets, users
from node.accounts.ratelimit import LoginThrottle, RateLimiter
from node.accounts.views import routes
from node.appkeys import CONFIG, DATABASE, LOGIN_LIMITER
from node.config import NodeConfig
from node.http_errors import ApiError, error_middleware
from node.provisioning import init_node
from node.storage.database import Database
from tests.support.databases import DatabaseFactory
from tests.support.waiting import wait_until

PASSWORD = "tongban-demo"
Client = Callable[..., Awaitable[TestClient]]  # the aiohttp_client fixture


async def make_node(tmp: Path, databases: DatabaseFactory, region: str, name: str) -> NodeConfig:
    return await init_node(
        tmp / region, region=region, name=name, database_url=await databases.new_url(region)
    )


def accounts_app(config: NodeConfig, limiter: LoginThrottle | None = None) -> web.Application:
    """The accounts area as a node serves it."""
    app = web.Application(middlewares=[error_middleware])
    app[CONFIG] = config
    if limiter is not None:
        app[LOGIN_LIMITER] = limiter
    app.add_routes(routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        db = Database(config.database_url)
        app[DATABASE] = db
        yield
        await db.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app


@pytest.fixture
async def config(tmp_path: Path, databases: DatabaseFactory) -> NodeConfig:
    return await make_node(tmp_path, databases, "430400", "衡阳市")


@pytest.fixture
async def db(config: NodeConfig) -> AsyncIterator[Database]:
    handle = Database(config.database_url)
    service.use_node_dir(handle, config.dir)
    yield handle
    await handle.dispose()


@pytest.fixture
async def client(aiohttp_client: Client, config: NodeConfig) -> TestClient:
    return await aiohttp_client(accounts_app(config))


async def login(client: TestClient, username: str, password: str = PASSWORD) -> tuple[int, Any]:
    resp = await client.post("/api/v1/login", json={"username": username, "password": password})
    return resp.status, await resp.json()


async def token_of(client: TestClient, username: str, password: str = PASSWORD) -> str:
    status, body = await login(client, username, password)
    assert status == 200, body
    return str(body["token"])


async def call(
    client: TestClient, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    resp = await client.request(method, path, json=body, headers=headers)
    return resp.status, await resp.json()


async def staff_users(db: Database) -> None:
    for role in ROLES:
        await service.create_user(db, role, PASSWORD, role, f"{role} 测试")


# -- login ------------------------------------------------------------------------------------


async def test_login_gives_a_token_for_me(client: TestClient, db: Database) -> None:
    await service.create_user(db, "Zhang.San", PASSWORD, "clerk", "张三")
    status, body = await login(client, " zhang.san ")
    assert status == 200, body
    assert body["expires_in"] == 3600
    assert body["user"]["username"] == "zhang.san"
    status, me = await call(client, "GET", "/api/v1/me", body["token"])
    assert status == 200
    assert me == {
        "id": body["user"]["id"],
        "username": "zhang.san",
        "display_name": "张三",
        "role": "clerk",
        "role_label": "收件人员",
        "region": "430400",
    }
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert {"sub", "username", "role", "region", "iat", "exp", "jti"} <= set(claims)
    assert claims["region"] == "430400"


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: TestClient, db: Database
) -> None:
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    wrong = await login(client, "clerk", "not-the-password")
    unknown = await login(client, "nobody", PASSWORD)
    bad_name = await login(client, "??", PASSWORD)
    assert wrong == unknown == bad_name
    assert wrong == (401, {"error": "invalid_credentials", "detail": "用户名或密码错误"})


async def test_login_input_is_checked(client: TestClient) -> None:
    status, body = await login(client, "clerk", "")
    assert status == 400
    assert body["error"] == "invalid_input"
    assert body["fields"] == [{"field": "password", "code": "required", "message": "此项必填"}]
    resp = await client.post("/api/v1/login", json={"username": 7})
    body = await resp.json()
    assert resp.status == 400
    assert {f["field"] for f in body["fields"]} == {"username", "password"}
    resp = await client.post("/api/v1/login", data=b"{nope", headers={"Content-Type": "x"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_json"
    resp = await client.post("/api/v1/login", json=["clerk", PASSWORD])
    assert resp.status == 400


async def test_five_failures_lock_the_account_for_fifteen_minutes(
    client: TestClient, db: Database
) -> None:
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    for _ in range(4):
        assert (await login(client, "clerk", "wrong-password"))[0] == 401
    status, body = await login(client, "clerk", "wrong-password")
    assert (status, body["error"]) == (423, "account_locked")
    # Locked: even the right password is refused, and nothing else is revealed.
    status, body = await login(client, "clerk")
    assert (status, body["error"]) == (423, "account_locked")
    user = await service.get_user(db, "clerk")
    assert user.locked_until is not None
    assert 14 * 60 < user.locked_until - time.time() <= 15 * 60
    # After the 15 minutes the right password works and the count starts again.
    later = time.time() + 15 * 60 + 1
    staff = await service.verify_login(db, "clerk", PASSWORD, region="430400", now=later)
    assert staff.username == "clerk"
    user = await service.get_user(db, "clerk")
    assert (user.failed_logins, user.locked_until) == (0, None)


async def test_a_success_resets_the_failure_count(db: Database) -> None:
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    for _ in range(4):
        with pytest.raises(service.InvalidCredentials):
            await service.verify_login(db, "clerk", "wrong-password")
    await service.verify_login(db, "clerk", PASSWORD)
    for _ in range(4):
        with pytest.raises(service.InvalidCredentials):
            await service.verify_login(db, "clerk", "wrong-password")
    assert (await service.get_user(db, "clerk")).failed_logins == 4


async def test_an_admin_password_reset_clears_the_lock(db: Database) -> None:
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    for _ in range(4):
        with pytest.raises(service.InvalidCredentials):
            await service.verify_login(db, "clerk", "wrong-password")
    with pytest.raises(service.AccountLocked):
        await service.verify_login(db, "clerk", "wrong-password")
    await service.set_password(db, "clerk", "a-new-password-1")
    assert (await service.verify_login(db, "clerk", "a-new-password-1")).role == "clerk"


async def test_login_failures_are_rate_limited_per_client(
    aiohttp_client: Client, config: NodeConfig, db: Database
) -> None:
    client = await aiohttp_client(accounts_app(config, LoginThrottle(rate_per_minute=1, burst=3)))
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    for _ in range(5):  # successes do not count
        assert (await login(client, "clerk"))[0] == 200
    for name in ("a1", "b2", "c3"):  # failures on different accounts do
        assert (await login(client, name, "wrong-password"))[0] == 401
    resp = await client.post("/api/v1/login", json={"username": "clerk", "password": PASSWORD})
    assert resp.status == 429
    assert (await resp.json())["error"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 1


class GatedHasher(PasswordHasher):
    """argon2id (cheap parameters) whose checks of wrong passwords wait at a gate until the
    test opens it: the attempts are then truly in flight together, whatever the engine."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.gate = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        if str(password).startswith("wrong"):
            with self._lock:
                self.waiting += 1
            self.gate.wait()
        return super().verify(hash, password)


async def test_parallel_guesses_cannot_get_past_the_lockout(
    aiohttp_client: Client, config: NodeConfig, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eleven wrong passwords in flight and the right one sent while they are: each attempt
    is counted before its password is checked, so only five are checked and the right one is
    locked out."""
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    hasher = GatedHasher()
    monkeypatch.setattr(service, "HASHER", hasher)
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=16))
    client = await aiohttp_client(accounts_app(config))
    wrong = [asyncio.create_task(login(client, "clerk", f"wrong-password-{n}")) for n in range(11)]

    async def five_in_flight() -> bool:
        return hasher.waiting >= service.MAX_FAILURES

    try:
        await wait_until(five_in_flight)
        right = await login(client, "clerk")
    finally:
        hasher.gate.set()
    answers = [await task for task in wrong]
    assert right[0] == 423 and right[1]["error"] == "account_locked"
    assert hasher.waiting == service.MAX_FAILURES  # only five passwords were ever checked
    statuses = sorted(status for status, _body in answers)
    assert statuses == [401] * (service.MAX_FAILURES - 1) + [423] * 7
    assert (await service.get_user(db, "clerk")).locked()
    assert (await login(client, "clerk"))[0] == 423


async def test_parallel_failures_cannot_get_past_the_address_limit(
    aiohttp_client: Client, config: NodeConfig, db: Database
) -> None:
    """Two replicas of the node on one database, ten failed logins from one address at once:
    the budget of three is counted in the database before any password is checked."""
    limiter = LoginThrottle(rate_per_minute=1, burst=3)
    replicas = [await aiohttp_client(accounts_app(config, limiter)) for _ in range(2)]
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    answers = await asyncio.gather(
        *(login(replicas[n % 2], f"user{n}", "wrong-password") for n in range(10))
    )
    statuses = sorted(status for status, _body in answers)
    assert statuses == [401] * 3 + [429] * 7
    assert {body["error"] for status, body in answers if status == 429} == {"rate_limited"}
    # The right password from that address waits too; the account itself is not locked.
    assert (await login(replicas[0], "clerk"))[0] == 429
    assert not (await service.get_user(db, "clerk")).locked()


# -- tokens -----------------------------------------------------------------------------------


async def test_an_expired_token_is_refused(client: TestClient, db: Database) -> None:
    user = await service.create_user(db, "clerk", PASSWORD, "clerk")
    staff = user.staff("430400")
    old = await service.issue_token(db, staff, "430400", now=time.time() - 3600 - 120)
    assert await call(client, "GET", "/api/v1/me", old) == (
        401,
        {"error": "unauthorized", "detail": "请重新登录"},
    )
    assert (await call(client, "POST", "/api/v1/token/refresh", old))[0] == 401
    fresh = await service.issue_token(db, staff, "430400", now=time.time() - 3000)
    assert (await call(client, "GET", "/api/v1/me", fresh))[0] == 200


async def test_a_token_is_good_for_one_hour_whatever_it_says(
    client: TestClient, db: Database
) -> None:
    """Signed with the node's own secret (a leaked secret, or a bug that signs what it is
    given): a token that claims a longer life, or was issued in the future, is refused."""
    user = await service.create_user(db, "clerk", PASSWORD, "clerk")
    good = await service.issue_token(db, user.staff("430400"), "430400")
    claims = jwt.decode(good, options={"verify_signature": False})
    secret = await service.jwt_secret(db)
    now = int(time.time())
    for iat, exp in (
        (now - 60, now + 30 * 24 * 3600),  # a month
        (now - 2 * 3600, now + 600),  # issued two hours ago, "still valid"
        (now + 3600, now + 7200),  # issued in an hour
    ):
        token = jwt.encode({**claims, "iat": iat, "exp": exp}, secret, algorithm="HS256")
        assert await call(client, "GET", "/api/v1/me", token) == (
            401,
            {"error": "unauthorized", "detail": "请重新登录"},
        ), (iat - now, exp - now)
        assert (await call(client, "POST", "/api/v1/token/refresh", token))[0] == 401
    assert (await call(client, "GET", "/api/v1/me", good))[0] == 200


async def test_logging_out_revokes_the_token(client: TestClient, db: Database) -> None:
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    token = await token_of(client, "clerk")
    status, body = await call(client, "POST", "/api/v1/token/refresh", token)
    assert status == 200
    refreshed = body["token"]
    assert await call(client, "POST", "/api/v1/logout", token) == (200, {"logged_out": True})
    # Every token of that login is dead at once, on every process (the database says so).
    for old in (token, refreshed):
        assert (await call(client, "GET", "/api/v1/me", old))[0] == 401
        assert (await call(client, "POST", "/api/v1/token/refresh", old))[0] == 401
        assert (await call(client, "POST", "/api/v1/logout", old))[0] == 401
    # Logging in again works.
    assert (await call(client, "GET", "/api/v1/me", await token_of(client, "clerk")))[0] == 200


async def test_a_token_of_another_regions_node_is_refused(
    aiohttp_client: Client, tmp_path: Path, databases: DatabaseFactory, config: NodeConfig
) -> None:
    other = await make_node(tmp_path, databases, "370500", "东营市")
    here = await aiohttp_client(accounts_app(config))
    there = await aiohttp_client(accounts_app(other))
    for node in (here, there):
        await service.create_user(node.app[DATABASE], "admin", PASSWORD, "admin")
    foreign = await token_of(there, "admin")
    assert (await call(there, "GET", "/api/v1/me", foreign))[0] == 200
    assert (await call(here, "GET", "/api/v1/me", foreign))[0] == 401
    # Signed with this node's own secret but naming another region: refused as well.
    db = here.app[DATABASE]
    staff = (await service.get_user(db, "admin")).staff("370500")
    misdirected = await service.issue_token(db, staff, "370500")
    assert (await call(here, "GET", "/api/v1/me", misdirected))[0] == 401


async def test_forged_tokens_are_refused(client: TestClient, db: Database) -> None:
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    good = await token_of(client, "clerk")
    claims = jwt.decode(good, options={"verify_signature": False})
    header, _payload, signature = good.split(".")

    def b64(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    forged = [
        # alg none, no signature
        jwt.encode({**claims, "role": "admin"}, None, algorithm="none"),
        b64({"alg": "none", "typ": "JWT"}) + "." + b64({**claims, "role": "admin"}) + ".",
        # someone else's key
        jwt.encode(claims, b"k" * 64, algorithm="HS256"),
        # payload changed, signature kept
        f"{header}.{b64({**claims, 'role': 'admin'})}.{signature}",
        # another user's id under the same signature
        f"{header}.{b64({**claims, 'sub': '999'})}.{signature}",
        "not-a-token",
        "",
    ]
    for token in forged:
        status, body = await call(client, "GET", "/api/v1/me", token)
        assert (status, body["error"]) == (401, "unauthorized"), token
    for header_value in ("", "Basic Y2xlcms6dG9uZ2Jhbi1kZW1v", "Bearer", good):
        resp = await client.get("/api/v1/me", headers={"Authorization": header_value})
        assert resp.status == 401, header_value
    assert (await call(client, "GET", "/api/v1/me", good))[0] == 200


async def test_refresh_gives_a_new_token_within_one_working_day(
    client: TestClient, db: Database
) -> None:
    user = await service.create_user(db, "clerk", PASSWORD, "clerk")
    token = await token_of(client, "clerk")
    status, body = await call(client, "POST", "/api/v1/token/refresh", token)
    assert status == 200, body
    fresh = body["token"]
    assert fresh != token
    old_claims = jwt.decode(token, options={"verify_signature": False})
    new_claims = jwt.decode(fresh, options={"verify_signature": False})
    assert new_claims["jti"] != old_claims["jti"]
    assert new_claims["auth_time"] == old_claims["auth_time"]
    assert (await call(client, "GET", "/api/v1/me", fresh))[0] == 200
    # A chain of refreshes ends twelve hours after the password was typed.
    now = time.time()
    stale = await service.issue_token(
        db, user.staff("430400"), "430400", now=now - 600, auth_time=now - 13 * 3600
    )
    assert (await call(client, "GET", "/api/v1/me", stale))[0] == 200
    assert (await call(client, "POST", "/api/v1/token/refresh", stale))[0] == 401


async def test_the_signing_secret_is_a_private_file_shared_by_replicas(
    config: NodeConfig, db: Database
) -> None:
    # Made by `tongban init`, readable by the node's user only, not in the database.
    path = config.dir / "secrets" / "staff-token.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    user = await service.create_user(db, "clerk", PASSWORD, "clerk")
    token = await service.issue_token(db, user.staff("430400"), "430400")
    other_process = Database(config.database_url)
    service.use_node_dir(other_process, config.dir)
    try:
        staff = await service.decode_token(other_process, token, "430400")
        assert await service.jwt_secret(other_process) == await service.jwt_secret(db)
    finally:
        await other_process.dispose()
    assert staff == Staff(user.id, "clerk", "clerk", "clerk", "430400")
    assert len(await service.jwt_secret(db)) >= 32
    async with db.read() as conn:
        assert (await conn.execute(select(node_secrets))).all() == []
    # A database handle nobody told where the node directory is cannot sign anything.
    stray = Database(config.database_url)
    try:
        with pytest.raises(RuntimeError):
            await service.issue_token(stray, user.staff("430400"), "430400")
    finally:
        await stray.dispose()


async def test_a_secret_kept_in_the_database_moves_to_the_file(config: NodeConfig) -> None:
    """A node from before: its secret (and its users' tokens) survive, the row goes."""
    old = secrets.token_bytes(64)
    path = config.dir / "secrets" / "staff-token.key"
    path.unlink()
    handle = Database(config.database_url)
    try:
        async with handle.write() as conn:
            value = base64.urlsafe_b64encode(old).decode().rstrip("=")
            await conn.execute(
                node_secrets.insert().values(name="jwt", value=value, created_at=time.time())
            )
        # What `tongban run` does before it serves.
        assert await service.ensure_token_secret(handle, config.dir) == old
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        async with handle.read() as conn:
            assert (await conn.execute(select(node_secrets))).all() == []
        service.use_node_dir(handle, config.dir)
        assert await service.jwt_secret(handle) == old
    finally:
        await handle.dispose()
    # Started again: the file is kept as it is.
    again = Database(config.database_url)
    try:
        assert await service.ensure_token_secret(again, config.dir) == old
    finally:
        await again.dispose()


# -- roles and the users API ------------------------------------------------------------------


async def test_admin_routes_refuse_other_roles(client: TestClient, db: Database) -> None:
    await staff_users(db)
    new = {"username": "li.si", "password": PASSWORD, "role": "clerk", "display_name": "李四"}
    for role in ("clerk", "approver", "inspector", "supervisor"):
        token = await token_of(client, role)
        assert await call(client, "GET", "/api/v1/users", token) == (
            403,
            {"error": "forbidden", "detail": "无权执行此操作"},
        )
        assert (await call(client, "POST", "/api/v1/users", token, new))[0] == 403
    assert (await call(client, "GET", "/api/v1/users", None))[0] == 401
    admin = await token_of(client, "admin")
    status, body = await call(client, "GET", "/api/v1/users", admin)
    assert status == 200
    assert [u["username"] for u in body["users"]] == sorted(ROLES)
    assert all("password_hash" not in u for u in body["users"])


def test_require_role() -> None:
    staff = Staff(1, "wang", "王五", "approver", "430400")
    require_role(staff, "approver", "admin")
    with pytest.raises(ApiError) as caught:
        require_role(staff, "clerk")
    assert (caught.value.status, caught.value.code) == (403, "forbidden")


async def test_authenticate_answers_401_without_a_token(config: NodeConfig, db: Database) -> None:
    from aiohttp.test_utils import make_mocked_request

    app = web.Application()
    app[CONFIG] = config
    app[DATABASE] = db
    with pytest.raises(ApiError) as caught:
        await authenticate(make_mocked_request("GET", "/api/v1/cases", app=app))
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        401,
        "unauthorized",
        "请重新登录",
    )


async def test_an_admin_adds_users(client: TestClient, db: Database) -> None:
    await service.create_user(db, "admin", PASSWORD, "admin")
    admin = await token_of(client, "admin")
    new = {"username": "Li.Si", "password": PASSWORD, "role": "approver", "display_name": "李四"}
    status, body = await call(client, "POST", "/api/v1/users", admin, new)
    assert status == 201, body
    assert (body["username"], body["role"], body["active"]) == ("li.si", "approver", True)
    assert (await login(client, "li.si"))[0] == 200
    status, body = await call(client, "POST", "/api/v1/users", admin, new)
    assert (status, body["error"]) == (409, "user_exists")
    status, body = await call(client, "POST", "/api/v1/users", admin, {})
    assert (status, body["error"]) == (400, "invalid_input")
    assert {f["field"] for f in body["fields"]} == {"username", "password", "role"}
    bad = {"username": "x", "password": "short", "role": "king"}
    status, body = await call(client, "POST", "/api/v1/users", admin, bad)
    assert (status, body["error"]) == (400, "invalid_input")
    assert {(f["field"], f["code"]) for f in body["fields"]} == {
        ("username", "invalid"),
        ("password", "weak_password"),
        ("role", "invalid"),
    }


async def test_passwords_change_for_oneself_and_by_an_admin(
    client: TestClient, db: Database
) -> None:
    await service.create_user(db, "admin", PASSWORD, "admin")
    clerk = await service.create_user(db, "clerk", PASSWORD, "clerk")
    path = f"/api/v1/users/{clerk.id}/password"
    token = await token_of(client, "clerk")
    status, body = await call(client, "POST", path, token, {"password": "clerk-new-pass-1"})
    assert (status, body["fields"][0]["field"]) == (400, "current_password")
    status, body = await call(
        client, "POST", path, token, {"password": "clerk-new-pass-1", "current_password": "nope"}
    )
    assert (status, body["fields"][0]["code"]) == (400, "wrong")
    status, body = await call(
        client, "POST", path, token, {"password": "short", "current_password": PASSWORD}
    )
    assert (status, body["fields"][0]["code"]) == (400, "weak_password")
    status, body = await call(
        client,
        "POST",
        path,
        token,
        {"password": "clerk-new-pass-1", "current_password": PASSWORD},
    )
    assert status == 200, body
    # The old token died with the old password; the answer carries a new one.
    assert (await call(client, "GET", "/api/v1/me", token))[0] == 401
    assert (await call(client, "GET", "/api/v1/me", body["token"]))[0] == 200
    assert (await login(client, "clerk"))[0] == 401
    assert (await login(client, "clerk", "clerk-new-pass-1"))[0] == 200
    # Another user's password: admins only, no current password needed.
    admin = await token_of(client, "admin")
    other = f"/api/v1/users/{(await service.get_user(db, 'admin')).id}/password"
    assert (await call(client, "POST", other, body["token"], {"password": "x" * 12}))[0] == 403
    status, _ = await call(client, "POST", path, admin, {"password": "reset-by-admin-1"})
    assert status == 200
    assert (await login(client, "clerk", "reset-by-admin-1"))[0] == 200
    assert (await call(client, "POST", "/api/v1/users/999/password", admin, {}))[0] == 404
    assert (await call(client, "POST", "/api/v1/users/abc/password", admin, {}))[0] == 404


async def test_a_deactivated_user_is_out_at_once(client: TestClient, db: Database) -> None:
    admin_user = await service.create_user(db, "admin", PASSWORD, "admin")
    clerk = await service.create_user(db, "clerk", PASSWORD, "clerk")
    admin, token = await token_of(client, "admin"), await token_of(client, "clerk")
    status, body = await call(client, "POST", f"/api/v1/users/{clerk.id}/deactivate", admin)
    assert (status, body["active"]) == (200, False)
    assert (await call(client, "GET", "/api/v1/me", token))[0] == 401
    assert await login(client, "clerk") == await login(client, "nobody")
    status, body = await call(client, "POST", f"/api/v1/users/{admin_user.id}/deactivate", admin)
    assert (status, body["error"]) == (409, "cannot_deactivate_self")
    with pytest.raises(service.LastAdmin):
        await service.deactivate(db, "admin")
    assert (await call(client, "POST", f"/api/v1/users/{clerk.id}/activate", admin))[0] == 200
    assert (await login(client, "clerk"))[0] == 200


# -- passwords at rest ------------------------------------------------------------------------


async def test_passwords_are_stored_as_argon2id_only(
    monkeypatch: pytest.MonkeyPatch, db: Database
) -> None:
    monkeypatch.setattr(service, "HASHER", PasswordHasher())  # the real parameters
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    async with db.read() as conn:
        row = (await conn.execute(select(users))).one()
    assert row.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in row.password_hash
    assert PASSWORD not in json.dumps([str(v) for v in row])
    assert (await service.verify_login(db, "clerk", PASSWORD)).username == "clerk"


async def test_a_hash_with_old_parameters_is_replaced_at_login(
    monkeypatch: pytest.MonkeyPatch, db: Database
) -> None:
    await service.create_user(db, "clerk", PASSWORD, "clerk")
    before = (await _hash_of(db, "clerk"), await service.get_user(db, "clerk"))
    monkeypatch.setattr(
        service, "HASHER", PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    )
    await service.verify_login(db, "clerk", PASSWORD)
    after = await _hash_of(db, "clerk")
    assert after != before[0]
    assert after.startswith("$argon2id$v=19$m=2048,t=2,p=1$")
    # Same password: tokens issued before stay valid.
    user = await service.get_user(db, "clerk")
    assert user.password_changed_at == before[1].password_changed_at


async def _hash_of(db: Database, username: str) -> str:
    async with db.read() as conn:
        return str(
            (
                await conn.execute(
                    select(users.c.password_hash).where(users.c.username == username)
                )
            ).scalar_one()
        )


def test_password_rules() -> None:
    assert service.password_problem("tongban-demo") is None
    assert service.password_problem("长城长城万里长城好风光") is None
    for weak in ("", "short", "123456789", "aaaaaaaaaaaa", "1212121212", "Password123"):
        assert service.password_problem(weak) is not None, weak
    assert service.password_problem("zhang.san.1", "zhang.san.1") is not None
    assert service.password_problem("x" * 257) is not None


async def test_nothing_secret_is_logged(
    caplog: pytest.LogCaptureFixture, client: TestClient, db: Database
) -> None:
    caplog.set_level(logging.DEBUG)
    await service.create_user(db, "admin", PASSWORD, "admin")
    token = await token_of(client, "admin")
    await login(client, "admin", "wrong-secret-1")
    await call(client, "POST", "/api/v1/token/refresh", token)
    await call(client, "POST", "/api/v1/users", token, {"username": "a", "password": "p-secret"})
    text = caplog.text
    assert "login" in text
    for secret in (PASSWORD, "wrong-secret-1", "p-secret", token, token.split(".")[2]):
        assert secret not in text


# -- the command line -------------------------------------------------------------------------


async def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str = "",
) -> tuple[int, str, str]:
    from node.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_users_added_on_the_command_line_can_log_in(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    client: TestClient,
    config: NodeConfig,
) -> None:
    d = str(config.dir)
    add = ["users", "add", "--dir", d, "--username", "wang", "--role", "approver"]
    code, out, _ = await run_cli(
        monkeypatch, capsys, [*add, "--display-name", "王五", "--password-stdin"], PASSWORD + "\n"
    )
    assert code == 0
    assert "wang" in out
    status, body = await login(client, "wang")
    assert status == 200
    assert body["user"]["display_name"] == "王五"
    assert body["user"]["role"] == "approver"

    code, _, err = await run_cli(monkeypatch, capsys, [*add, "--password-stdin"], PASSWORD)
    assert code == 1
    assert "用户名已存在" in err
    weak = ["users", "add", "--dir", d, "--username", "zhao", "--role", "clerk"]
    code, _, err = await run_cli(monkeypatch, capsys, [*weak, "--password-stdin"], "short\n")
    assert code == 1
    assert "至少需要 10 个字符" in err

    # Without --password-stdin: asked twice.
    answers = iter(["zhao-password-1", "zhao-password-2"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code, _, err = await run_cli(monkeypatch, capsys, weak)
    assert code == 1
    assert "不一致" in err
    answers = iter(["zhao-password-1", "zhao-password-1"])
    code, _, _ = await run_cli(monkeypatch, capsys, weak)
    assert code == 0
    assert (await login(client, "zhao", "zhao-password-1"))[0] == 200

    passwd = ["users", "passwd", "--dir", d, "--username", "wang", "--password-stdin"]
    code, _, _ = await run_cli(monkeypatch, capsys, passwd, "wang-new-password\n")
    assert code == 0
    assert (await login(client, "wang"))[0] == 401
    assert (await login(client, "wang", "wang-new-password"))[0] == 200

    code, out, _ = await run_cli(monkeypatch, capsys, ["users", "list", "--dir", d])
    assert code == 0
    assert "wang" in out
    assert "zhao" in out
    assert "approver" in out
    assert "$argon2" not in out
    code, _, _ = await run_cli(
        monkeypatch, capsys, ["users", "deactivate", "--dir", d, "--username", "zhao"]
    )
    assert code == 0
    assert (await login(client, "zhao", "zhao-password-1"))[0] == 401


# -- the rate limiter -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_minute=6, burst=3, clock=clock)
    assert limiter.check("ip:1")
    assert [limiter.hit("ip:1") for _ in range(4)] == [True, True, True, False]
    assert not limiter.check("ip:1")
    assert limiter.hit("ip:2")  # keys are independent
    assert limiter.retry_after("ip:1") == pytest.approx(10.0)
    clock.now += 9.9
    assert not limiter.hit("ip:1")
    clock.now += 0.2
    assert limiter.check("ip:1")
    assert limiter.check("ip:1")  # looking takes nothing
    assert limiter.hit("ip:1")
    assert not limiter.hit("ip:1")
    clock.now += 3600  # never more than the burst
    assert [limiter.hit("ip:1") for _ in range(4)] == [True, True, True, False]
    limiter.reset("ip:1")
    assert limiter.hit("ip:1")


def test_rate_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_minute=60, burst=5, max_keys=100, clock=clock)
    for i in range(10_000):
        limiter.hit(f"case:{i}")
    assert len(limiter) == 100
    # Buckets that have refilled are forgotten (they are the same as new ones).
    clock.now += 5.0
    limiter.hit("fresh")
    assert len(limiter) == 1
    # A key that is kept busy keeps its (empty) bucket while others come and go.
    for _ in range(5):
        limiter.hit("busy")
    assert not limiter.hit("busy")
    for i in range(99):
        limiter.hit(f"other:{i}")
    assert not limiter.check("busy")


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate_per_minute=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate_per_minute=1, burst=0)
