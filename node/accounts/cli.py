"""Command-line subcommands of this area (registered by node.cli): ``tongban users ...``.

- ``tongban users add --dir DIR --username U --role R [--display-name N] [--password-stdin]``
- ``tongban users list --dir DIR``
- ``tongban users passwd --dir DIR --username U [--password-stdin]``
- ``tongban users deactivate|activate --dir DIR --username U``

Without ``--password-stdin`` the password is asked twice on the terminal (never echoed); with
it, the first line of standard input is the password (for scripts: ``printf %s "$PW" |``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from node.accounts import service
from node.accounts.staff import ROLE_LABELS, ROLES
from node.config import NodeConfig
from node.storage.database import Database
from node.storage.migrate import upgrade

T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this area's subcommands to the `tongban` parser."""
    users = sub.add_parser("users", help="staff accounts").add_subparsers()

    p = users.add_parser("add", help="add a staff member")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--username", required=True)
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--display-name", help="姓名 (default: the username)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=_add)

    p = users.add_parser("list", help="list staff members")
    p.add_argument("--dir", required=True, type=Path)
    p.set_defaults(func=_list)

    p = users.add_parser("passwd", help="set a staff member's password (also clears a lock)")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--username", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=_passwd)

    for name, helptext in (
        ("deactivate", "stop a staff member from logging in"),
        ("activate", "let a deactivated staff member log in again"),
    ):
        p = users.add_parser(name, help=helptext)
        p.add_argument("--dir", required=True, type=Path)
        p.add_argument("--username", required=True)
        p.set_defaults(func=_set_active, active=name == "activate")


class _Refused(Exception):
    """A refusal to print as ``错误 / error: ...``."""


def _fail(message: str) -> int:
    print(f"错误 / error: {message}", file=sys.stderr)
    return 1


def _with_db(directory: Path, work: Callable[[Database], Awaitable[T]]) -> T:
    config = NodeConfig.load(directory)

    async def go() -> T:
        db = Database(config.database_url)
        try:
            await upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def _read_password(from_stdin: bool, username: str) -> str:
    """The new password from stdin or asked twice; _Refused if weak or the two differ."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("密码 Password: ")
        again = getpass.getpass("再次输入 Repeat password: ")
        if password != again:
            raise _Refused("两次输入的密码不一致 (passwords differ)")
    problem = service.password_problem(password, username)
    if problem is not None:
        raise _Refused(
            f"{problem} (weak password: at least {service.MIN_PASSWORD_LENGTH} characters, "
            "not common, not the username)"
        )
    return password


def _refusal(exc: service.AccountError) -> str:
    if isinstance(exc, service.InvalidInput):
        return "；".join(f"{field}: {message}" for field, _code, message in exc.fields)
    return f"{exc.message} ({exc.code})"


def _add(args: argparse.Namespace) -> int:
    try:
        password = _read_password(args.password_stdin, args.username)
        user = _with_db(
            args.dir,
            lambda db: service.create_user(
                db, args.username, password, args.role, args.display_name
            ),
        )
    except _Refused as exc:
        return _fail(str(exc))
    except service.AccountError as exc:
        return _fail(_refusal(exc))
    print(f"已添加用户 added user {user.username} ({user.role} {ROLE_LABELS[user.role]})")
    return 0


def _list(args: argparse.Namespace) -> int:
    found = _with_db(args.dir, service.list_users)
    print(f"{'id':>4}  {'username':<20} {'role':<11} {'status':<8} display name")
    for user in found:
        status = "locked" if user.locked() else ("active" if user.active else "inactive")
        print(f"{user.id:>4}  {user.username:<20} {user.role:<11} {status:<8} {user.display_name}")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    try:
        password = _read_password(args.password_stdin, args.username)
        user = _with_db(args.dir, lambda db: service.set_password(db, args.username, password))
    except _Refused as exc:
        return _fail(str(exc))
    except service.AccountError as exc:
        return _fail(_refusal(exc))
    print(f"已设置新密码 password set for {user.username}")
    return 0


def _set_active(args: argparse.Namespace) -> int:
    change = service.activate if args.active else service.deactivate
    try:
        user = _with_db(args.dir, lambda db: change(db, args.username))
    except service.AccountError as exc:
        return _fail(_refusal(exc))
    state = "已启用 activated" if user.active else "已停用 deactivated"
    print(f"{state} {user.username}")
    return 0
