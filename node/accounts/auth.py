"""Who is calling: staff by Bearer JWT. (Interface; node/accounts implements it.)"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

ROLES = ("clerk", "approver", "inspector", "supervisor", "admin")


@dataclass(frozen=True)
class Staff:
    user_id: int
    username: str
    display_name: str
    role: str
    region: str


async def authenticate(request: web.Request) -> Staff:
    """The staff member of the request's Bearer token, or ApiError 401 (code ``unauthorized``)."""
    raise NotImplementedError


def require_role(staff: Staff, *roles: str) -> None:
    """ApiError 403 (code ``forbidden``) unless ``staff.role`` is one of ``roles``."""
    raise NotImplementedError
