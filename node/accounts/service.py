"""Staff accounts: passwords (argon2id), lockout, and short-lived staff tokens (HS256 JWT).

No HTTP here: refusals are ``AccountError`` subclasses with a stable ``code`` and a Chinese
``message``; node.accounts.views and node.accounts.auth turn them into API errors.

Tokens are signed with a secret kept in a file of the node directory
(``secrets/staff-token.key``, mode 0600, made by ``tongban init`` or at first start), which
every process serving one region shares, so each accepts the tokens of the others. A token
names the region of the node that issued it and is refused anywhere else. It also carries the
user's ``password_changed_at``: setting a new password voids every older token at once, and a
deactivated user's tokens stop working on the next request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import time
import unicodedata
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Float, case, delete, func, insert, literal, null, select, update
from sqlalchemy.exc import IntegrityError

from node.accounts.models import node_secrets, users
from node.accounts.staff import ROLE_LABELS, ROLES, Staff
from node.filemodes import write_private_once
from node.storage.database import Database

log = logging.getLogger(__name__)

#: Lifetime of a staff token, seconds ("short-lived"); refresh before it ends.
TOKEN_LIFETIME = 3600.0
#: Longest chain of refreshes from one login, seconds: after a working day, log in again.
MAX_SESSION = 12 * 3600.0
#: Clock skew tolerated between the node's processes when checking exp/iat, seconds.
TOKEN_LEEWAY = 30
TOKEN_AUDIENCE = "tongban-staff"
TOKEN_ALGORITHM = "HS256"
#: Name of the token signing secret in ``node_secrets``, where nodes before kept it: now only
#: read once, to move it into TOKEN_SECRET_FILE.
JWT_SECRET_NAME = "jwt"
#: The staff token signing secret, relative to the node directory (mode 0600).
TOKEN_SECRET_FILE = Path("secrets") / "staff-token.key"
JWT_SECRET_BYTES = 64

#: Consecutive failed logins that lock an account, and for how long, seconds.
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60.0

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MAX_DISPLAY_NAME = 100

CHINA = timezone(timedelta(hours=8))

#: Well-known passwords that pass the length rule but nothing else (compared in lower case).
_COMMON_PASSWORDS = frozenset(
    {
        "0123456789",
        "1234567890",
        "12345678910",
        "1234567890a",
        "a123456789",
        "abc1234567",
        "abcdefghij",
        "qwertyuiop",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "password12",
        "password123",
        "password1234",
        "passw0rd123",
        "admin12345",
        "admin123456",
        "iloveyou123",
        "qwerty12345",
        "woaini1314",
        "5201314520",
    }
)

#: The argon2id hasher (argon2-cffi defaults: RFC 9106 low-memory profile). Replaceable in
#: tests; a stored hash made with other parameters is rehashed at the next successful login.
HASHER = PasswordHasher()


# -- errors -----------------------------------------------------------------------------------


class AccountError(Exception):
    """A refusal: stable ``code`` for programs, Chinese ``message`` for people."""

    code = "account_error"
    message = "账号操作失败"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(f"{self.code}: {self.message}")


class InvalidInput(AccountError):
    """Bad fields; ``fields`` lists ``(field, code, message)``."""

    code = "invalid_input"
    message = "输入有误"

    def __init__(self, fields: list[tuple[str, str, str]]) -> None:
        super().__init__("；".join(message for _field, _code, message in fields) or None)
        self.fields = fields


class InvalidCredentials(AccountError):
    """Unknown user, wrong password, or deactivated account: one answer for all three."""

    code = "invalid_credentials"
    message = "用户名或密码错误"


class AccountLocked(AccountError):
    code = "account_locked"

    def __init__(self, until: float) -> None:
        self.until = until
        minutes = max(1, round((until - time.time()) / 60))
        super().__init__(f"连续登录失败次数过多，账号已锁定，请约 {minutes} 分钟后再试")


class RateLimited(AccountError):
    """Too many failed logins from one client address (node.accounts.ratelimit)."""

    code = "rate_limited"
    message = "登录尝试过于频繁，请稍后再试"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__()


class InvalidToken(AccountError):
    """Missing, expired, forged, voided or foreign token."""

    code = "unauthorized"
    message = "请重新登录"


class UserExists(AccountError):
    code = "user_exists"
    message = "用户名已存在"


class UserNotFound(AccountError):
    code = "user_not_found"
    message = "用户不存在"


class LastAdmin(AccountError):
    code = "last_admin"
    message = "不能停用最后一个系统管理员"


# -- users ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """One row of ``users`` without the password hash."""

    id: int
    username: str
    display_name: str
    role: str
    active: bool
    created_at: float
    failed_logins: int
    locked_until: float | None
    password_changed_at: float

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(
            id=int(row.id),
            username=row.username,
            display_name=row.display_name,
            role=row.role,
            active=bool(row.active),
            created_at=float(row.created_at),
            failed_logins=int(row.failed_logins),
            locked_until=None if row.locked_until is None else float(row.locked_until),
            password_changed_at=float(row.password_changed_at),
        )

    def staff(self, region: str) -> Staff:
        """This user as the ``Staff`` of ``region``'s node."""
        return Staff(
            user_id=self.id,
            username=self.username,
            display_name=self.display_name,
            role=self.role,
            region=region,
        )

    def locked(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.locked_until is not None and self.locked_until > now

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """The API form (times as ISO 8601 in China time)."""
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "role_label": ROLE_LABELS.get(self.role, self.role),
            "active": self.active,
            "locked": self.locked(now),
            "locked_until": _iso(self.locked_until) if self.locked(now) else None,
            "failed_logins": self.failed_logins,
            "created_at": _iso(self.created_at),
            "password_changed_at": _iso(self.password_changed_at),
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, CHINA).isoformat(timespec="seconds")


def normalize_username(username: str) -> str:
    """Usernames are compared in lower case without surrounding spaces."""
    return unicodedata.normalize("NFKC", username).strip().lower()


def password_problem(password: object, username: str | None = None) -> str | None:
    """Why ``password`` is refused (a Chinese sentence), or None if it is acceptable.

    At least 10 characters, at most 256, at least 4 different characters, not the username and
    not a well-known password.
    """
    if not isinstance(password, str):
        return "密码应为字符串"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"密码不能超过 {MAX_PASSWORD_LENGTH} 个字符"
    if len(set(password)) < 4:
        return "密码过于简单：请使用更多不同的字符"
    folded = password.strip().lower()
    if username and folded == normalize_username(username):
        return "密码不能与用户名相同"
    if folded in _COMMON_PASSWORDS:
        return "密码过于常见，请换一个"
    return None


def _check_fields(
    username: object, password: object, role: object, display_name: object
) -> tuple[list[tuple[str, str, str]], str]:
    """The problems of a new user's fields, and the normalized username."""
    errors: list[tuple[str, str, str]] = []
    name = ""
    if not isinstance(username, str) or not username.strip():
        errors.append(("username", "required", "请填写用户名"))
    else:
        name = normalize_username(username)
        if not USERNAME_RE.match(name):
            errors.append(
                (
                    "username",
                    "invalid",
                    "用户名应为 2–64 位小写字母、数字、点、下划线或连字符，以字母或数字开头",
                )
            )
    if role not in ROLES:
        errors.append(("role", "invalid", "角色应为 " + "、".join(ROLES) + " 之一"))
    if display_name is not None and (
        not isinstance(display_name, str)
        or len(display_name.strip()) > MAX_DISPLAY_NAME
        or any(unicodedata.category(ch) == "Cc" for ch in display_name)
    ):
        errors.append(("display_name", "invalid", f"姓名应为不超过 {MAX_DISPLAY_NAME} 字的文字"))
    problem = password_problem(password, name or None)
    if problem is not None:
        errors.append(("password", "weak_password", problem))
    return errors, name


async def _hash(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


async def _verify(password_hash: str | None, password: str) -> bool:
    """Check ``password`` against ``password_hash`` (None: against a dummy, always False)."""

    def run() -> bool:
        try:
            return HASHER.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(run)


_dummy: dict[int, str] = {}


def _dummy_hash() -> str:
    """A hash of nothing anyone knows, made with the current parameters: unknown usernames
    cost the same argon2 work as known ones, so timing does not tell which exist."""
    key = id(HASHER)
    if key not in _dummy:
        _dummy.clear()
        _dummy[key] = HASHER.hash(secrets.token_urlsafe(24))
    return _dummy[key]


async def _user_row(conn: Any, user: int | str) -> Any:
    if isinstance(user, int):
        where = users.c.id == user
    else:
        where = users.c.username == normalize_username(user)
    return (await conn.execute(select(users).where(where))).first()


async def create_user(
    db: Database,
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
    *,
    now: float | None = None,
) -> User:
    """Add an active user. Raises InvalidInput (bad username, role, display name or weak
    password) or UserExists."""
    errors, name = _check_fields(username, password, role, display_name)
    if errors:
        raise InvalidInput(errors)
    now = time.time() if now is None else now
    password_hash = await _hash(password)
    shown = (display_name or "").strip() or name
    try:
        async with db.write() as conn:
            if await _user_row(conn, name) is not None:
                raise UserExists()
            result = await conn.execute(
                insert(users).values(
                    username=name,
                    display_name=shown,
                    role=role,
                    password_hash=password_hash,
                    active=True,
                    created_at=now,
                    failed_logins=0,
                    locked_until=None,
                    password_changed_at=now,
                )
            )
            user_id = int(result.inserted_primary_key[0])
    except IntegrityError as exc:  # another process added the same name meanwhile
        raise UserExists() from exc
    log.info("user added: %s (%s)", name, role)
    return User(user_id, name, shown, role, True, now, 0, None, now)


async def get_user(db: Database, user: int | str) -> User:
    """The user by id or username; UserNotFound otherwise."""
    async with db.read() as conn:
        row = await _user_row(conn, user)
    if row is None:
        raise UserNotFound()
    return User.from_row(row)


async def list_users(db: Database) -> list[User]:
    """All users, by username."""
    async with db.read() as conn:
        rows = (await conn.execute(select(users).order_by(users.c.username))).all()
    return [User.from_row(row) for row in rows]


async def set_password(
    db: Database, user: int | str, password: str, *, now: float | None = None
) -> User:
    """Give ``user`` (id or username) a new password: clears a lock and voids older tokens.
    Raises UserNotFound or InvalidInput (weak password)."""
    current = await get_user(db, user)
    problem = password_problem(password, current.username)
    if problem is not None:
        raise InvalidInput([("password", "weak_password", problem)])
    now = time.time() if now is None else now
    if now <= current.password_changed_at:  # keep the token generation strictly increasing
        now = current.password_changed_at + 0.001
    password_hash = await _hash(password)
    async with db.write() as conn:
        await conn.execute(
            update(users)
            .where(users.c.id == current.id)
            .values(
                password_hash=password_hash,
                password_changed_at=now,
                failed_logins=0,
                locked_until=None,
            )
        )
    log.info("password changed: %s", current.username)
    return await get_user(db, current.id)


async def _set_active(db: Database, user: int | str, active: bool) -> User:
    async with db.write() as conn:
        row = await _user_row(conn, user)
        if row is None:
            raise UserNotFound()
        if not active and row.role == "admin" and row.active:
            admins = (
                await conn.execute(
                    select(func.count())
                    .select_from(users)
                    .where(users.c.role == "admin", users.c.active.is_(True))
                )
            ).scalar_one()
            if admins <= 1:
                raise LastAdmin()
        await conn.execute(update(users).where(users.c.id == row.id).values(active=active))
    log.info("user %s: %s", "activated" if active else "deactivated", row.username)
    return await get_user(db, int(row.id))


async def deactivate(db: Database, user: int | str) -> User:
    """Stop ``user`` (id or username) from logging in; their tokens stop working at once.
    The row stays (the audit log names it). Refuses to deactivate the last active admin."""
    return await _set_active(db, user, False)


async def activate(db: Database, user: int | str) -> User:
    """Undo ``deactivate``."""
    return await _set_active(db, user, True)


# -- login ------------------------------------------------------------------------------------


async def verify_login(
    db: Database, username: str, password: str, *, region: str = "", now: float | None = None
) -> Staff:
    """The staff member whose username and password these are (``region``: this node's).

    Raises InvalidCredentials for an unknown user, a wrong password and a deactivated account
    alike (an unknown username costs the same argon2 work as a known one), and AccountLocked
    while the account is locked: five consecutive failures lock it for 15 minutes.

    The attempt is counted in the database *before* the password is checked, with one
    conditional UPDATE (``_claim_attempt``): however many attempts arrive at once, on however
    many processes, at most five are ever checked before the lock.
    """
    now = time.time() if now is None else now
    name = normalize_username(username) if isinstance(username, str) else ""
    typed = password if isinstance(password, str) else ""
    row = None
    if USERNAME_RE.match(name):
        async with db.read() as conn:
            row = await _user_row(conn, name)
    if row is None or not row.active:
        await _verify(None, typed)  # the same argon2 work as for a real account
        log.info("failed login: unknown or inactive username")
        raise InvalidCredentials()
    attempt = await _claim_attempt(db, int(row.id), now)
    if not attempt.allowed:
        raise AccountLocked(attempt.locked_until)
    if not await _verify(row.password_hash, typed):
        if attempt.locks:
            log.warning("account locked after %d failed logins: %s", MAX_FAILURES, row.username)
            raise AccountLocked(attempt.locked_until)
        log.info("failed login: %s", row.username)
        raise InvalidCredentials()
    changes: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
    if HASHER.check_needs_rehash(row.password_hash):
        changes["password_hash"] = await _hash(typed)
    async with db.write() as conn:
        await conn.execute(update(users).where(users.c.id == row.id).values(**changes))
    log.info("login: %s (%s)", row.username, row.role)
    return User.from_row(row).staff(region)


@dataclass(frozen=True)
class _Attempt:
    allowed: bool
    #: This attempt was the last one allowed: if it fails, the account is locked.
    locks: bool
    locked_until: float


async def _claim_attempt(db: Database, user_id: int, now: float) -> _Attempt:
    """Count one login attempt before its password is checked.

    ``failed_logins`` counts failed attempts and attempts in progress; a success sets it back
    to 0. The attempt that brings it to MAX_FAILURES also sets the lock (a success lifts it
    again), and while the count is at MAX_FAILURES or the lock holds, no attempt is allowed.
    The check and the count are one UPDATE ... WHERE, so on PostgreSQL a concurrent attempt
    waits for the row and re-checks the condition, and SQLite has one writer: the processes
    of a node on one database agree.
    """
    until = now + LOCK_SECONDS
    async with db.write() as conn:
        # A lock that has ended starts a new count.
        await conn.execute(
            update(users)
            .where(
                users.c.id == user_id,
                users.c.locked_until.is_not(None),
                users.c.locked_until <= now,
            )
            .values(failed_logins=0, locked_until=None)
        )
        claimed = await conn.execute(
            update(users)
            .where(
                users.c.id == user_id,
                users.c.locked_until.is_(None),
                users.c.failed_logins < MAX_FAILURES,
            )
            .values(
                failed_logins=users.c.failed_logins + 1,
                locked_until=case(
                    (users.c.failed_logins + 1 >= MAX_FAILURES, literal(until, Float())),
                    else_=null(),
                ),
            )
        )
        row = (
            await conn.execute(
                select(users.c.failed_logins, users.c.locked_until).where(users.c.id == user_id)
            )
        ).one()
    locked_until = until if row.locked_until is None else float(row.locked_until)
    if claimed.rowcount != 1:
        return _Attempt(allowed=False, locks=False, locked_until=locked_until)
    return _Attempt(
        allowed=True, locks=row.failed_logins >= MAX_FAILURES, locked_until=locked_until
    )


# -- tokens -----------------------------------------------------------------------------------

_secrets: weakref.WeakKeyDictionary[Database, bytes] = weakref.WeakKeyDictionary()
_node_dirs: weakref.WeakKeyDictionary[Database, Path] = weakref.WeakKeyDictionary()


def token_secret_file(directory: Path) -> Path:
    """Where the staff token secret of the node in ``directory`` lives."""
    return directory / TOKEN_SECRET_FILE


def use_node_dir(db: Database, directory: Path) -> None:
    """Tell this area which node directory ``db`` belongs to: its token secret is there.
    Cheap; the HTTP code calls it on every request (node.accounts.sessions.database)."""
    if _node_dirs.get(db) != directory:
        _node_dirs[db] = directory
        _secrets.pop(db, None)


async def jwt_secret(db: Database) -> bytes:
    """The token signing secret of the node ``db`` belongs to (``use_node_dir``), read from
    its file once and cached per Database (so per app / per process)."""
    cached = _secrets.get(db)
    if cached is not None:
        return cached
    directory = _node_dirs.get(db)
    if directory is None:
        raise RuntimeError("the token secret is in the node directory: call use_node_dir first")
    secret = await ensure_token_secret(db, directory)
    _secrets[db] = secret
    return secret


async def ensure_token_secret(db: Database, directory: Path) -> bytes:
    """The secret in ``DIR/secrets/staff-token.key`` (mode 0600 in a 0700 folder), made now if
    there is none: from the ``jwt`` row of ``node_secrets`` that nodes before kept in the
    database (so their tokens stay valid), else at random. The row is deleted once the file
    exists: a user who can read the database must not be able to sign staff tokens.

    Replicas share the node directory. A new file is written aside and hard-linked into place,
    which fails if another process was first; then that process's file is used. So every
    replica ends up with the same secret, and nobody ever reads a half-written file.
    """
    path = token_secret_file(directory)
    secret = await asyncio.to_thread(_read_secret_file, path)
    if secret is None:
        value = await _read_db_secret(db)
        if value is None:
            value = _b64(secrets.token_bytes(JWT_SECRET_BYTES))
        await asyncio.to_thread(_write_secret_file, path, value)
        secret = await asyncio.to_thread(_read_secret_file, path)
        if secret is None:  # pragma: no cover - we just wrote it
            raise RuntimeError(f"could not store the token secret in {path}")
        log.info("staff token secret stored in %s", path)
    async with db.write() as conn:
        await conn.execute(delete(node_secrets).where(node_secrets.c.name == JWT_SECRET_NAME))
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _read_secret_file(path: Path) -> bytes | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    try:
        secret = _unb64(text)
    except ValueError as exc:
        raise RuntimeError(f"{path}: not a token secret (base64)") from exc
    if len(secret) < 32:
        raise RuntimeError(f"{path}: a token secret needs at least 32 bytes")
    return secret


def _write_secret_file(path: Path, value: str) -> None:
    write_private_once(path, value + "\n")  # another replica was first: keep theirs


async def _read_db_secret(db: Database) -> str | None:
    async with db.read() as conn:
        return (
            await conn.execute(
                select(node_secrets.c.value).where(node_secrets.c.name == JWT_SECRET_NAME)
            )
        ).scalar_one_or_none()


async def issue_token(
    db: Database,
    staff: Staff,
    region: str,
    *,
    now: float | None = None,
    auth_time: float | None = None,
) -> str:
    """A staff token for ``staff`` from the node of ``region``, valid for TOKEN_LIFETIME.

    Claims: sub (user id as a string), username, role, region, iat, exp, jti, plus aud
    ``tongban-staff``, pwc (the user's password_changed_at), tv (the user's token_version,
    which logging out bumps) and auth_time (when the user last typed a password; refreshes
    keep it). ``now`` in the past gives an already expired token.
    Raises InvalidToken if the user is gone or deactivated.
    """
    now = time.time() if now is None else now
    async with db.read() as conn:
        row = await _user_row(conn, staff.user_id)
    if row is None or not row.active:
        raise InvalidToken()
    claims = {
        "sub": str(row.id),
        "username": row.username,
        "role": row.role,
        "region": region,
        "aud": TOKEN_AUDIENCE,
        "iat": int(now),
        "exp": int(now + TOKEN_LIFETIME),
        "auth_time": int(now if auth_time is None else auth_time),
        "jti": uuid.uuid4().hex,
        "pwc": float(row.password_changed_at),
        "tv": int(row.token_version),
    }
    return jwt.encode(claims, await jwt_secret(db), algorithm=TOKEN_ALGORITHM)


def verify_token(
    secret: bytes, token: str, region: str, *, now: float | None = None
) -> dict[str, Any]:
    """The claims of a token signed with ``secret`` for ``region``'s node; InvalidToken
    otherwise. No database.

    Checked: signature (HS256 only), audience, region, expiry, and the lifetime against the
    clock: a token issued in the future, or whose ``exp`` lies more than TOKEN_LIFETIME after
    its ``iat``, is refused whatever ``exp`` says (so a token is never good for more than an
    hour after it was issued, even one signed by mistake or with a leaked secret).
    """
    now = time.time() if now is None else now
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],
            audience=TOKEN_AUDIENCE,
            leeway=TOKEN_LEEWAY,
            options={"require": ["sub", "exp", "iat", "jti", "region", "pwc", "tv", "aud"]},
        )
        issued, expires = float(claims["iat"]), float(claims["exp"])
    except (jwt.PyJWTError, TypeError, ValueError) as exc:
        raise InvalidToken() from exc
    if (
        issued > now + TOKEN_LEEWAY
        or expires - issued > TOKEN_LIFETIME
        or now > issued + TOKEN_LIFETIME + TOKEN_LEEWAY
    ):
        raise InvalidToken()
    if claims.get("region") != region or not str(claims.get("sub", "")).isdigit():
        raise InvalidToken()
    if not isinstance(claims.get("tv"), int):
        raise InvalidToken()
    return claims


async def _decode(db: Database, token: str, region: str) -> tuple[Staff, dict[str, Any]]:
    claims = verify_token(await jwt_secret(db), token, region)
    async with db.read() as conn:
        row = await _user_row(conn, int(claims["sub"]))
    if (
        row is None
        or not row.active
        or claims["pwc"] != float(row.password_changed_at)
        or claims["tv"] != int(row.token_version)
    ):
        raise InvalidToken()
    # Role and name as they are now: a role taken away is gone before the token expires.
    return User.from_row(row).staff(region), claims


async def revoke_tokens(db: Database, user_id: int) -> None:
    """Log ``user_id`` out: every token issued to them so far stops working at once, on every
    process of the node (their ``tv`` claim no longer matches ``users.token_version``)."""
    async with db.write() as conn:
        await conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(token_version=users.c.token_version + 1)
        )
    log.info("tokens revoked: user %d", user_id)


async def decode_token(db: Database, token: str, region: str) -> Staff:
    """The staff member of a token issued by this node (``region``); InvalidToken if it is
    malformed, forged, expired, of another region, of a deactivated user, older than the
    user's last password change, or revoked by a logout."""
    staff, _claims = await _decode(db, token, region)
    return staff


async def refresh_token(db: Database, token: str, region: str, *, now: float | None = None) -> str:
    """A fresh token for the holder of a valid ``token``; InvalidToken if it is not valid or
    its login is older than MAX_SESSION."""
    now = time.time() if now is None else now
    staff, claims = await _decode(db, token, region)
    auth_time = float(claims.get("auth_time", claims["iat"]))
    if now - auth_time > MAX_SESSION:
        raise InvalidToken()
    return await issue_token(db, staff, region, now=now, auth_time=auth_time)
