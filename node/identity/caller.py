"""Who a request comes from: the citizen of a page's sealed session, or the citizen an API
caller's ``Authorization: Bearer <id_token>`` vouches for (docs/identity.md)."""

from __future__ import annotations

import logging

from aiohttp import web

from node.appkeys import CASES, CONFIG, DATABASE, IDENTITY
from node.cases.intake import CitizenIdentity
from node.http_errors import ApiError
from node.identity import session
from node.identity.errors import IdentityError, IdentityErrorCode
from node.identity.session import CitizenSession
from node.identity.session_ends import session_ended
from node.identity.verification import VerifiedIdentity

log = logging.getLogger(__name__)


async def citizen_session(request: web.Request) -> CitizenSession | None:
    """The signed-in citizen of a page request, or None (no cookie, one that does not open or
    has expired, or a session a logout ended)."""
    rp = request.app[IDENTITY]
    config = request.app[CONFIG]
    found = session.read_session(
        request,
        request.app[CASES].sealer,
        config.region,
        rp.clock(),
        secure=config.url.startswith("https://"),
    )
    if found is None or await session_ended(request.app[DATABASE], found):
        return None
    return found


def as_citizen(identity: VerifiedIdentity | CitizenSession) -> CitizenIdentity:
    if isinstance(identity, CitizenSession) and not identity.verified:
        raise ValueError("an unverified session vouches for nobody")
    return CitizenIdentity(name=identity.name, id_number=identity.id_number, issuer=identity.issuer)


async def api_identity(request: web.Request) -> CitizenIdentity | None:
    """The citizen an API request's ``Authorization: Bearer <id_token>`` vouches for; None
    without the header. A token that does not verify is refused (``identity_token_*``), never
    treated as absent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    rp = request.app[IDENTITY]
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise IdentityError(IdentityErrorCode.TOKEN_MALFORMED)
        if not rp.configured:
            raise IdentityError(
                IdentityErrorCode.PROVIDER_UNAVAILABLE, "本节点未接入统一身份认证，无法核验身份凭证"
            )
        return as_citizen(await rp.verify(token.strip(), nonce=None))
    except IdentityError as exc:
        log.info("online application: identity refused (%s)", exc.code)
        raise ApiError(exc.status, str(exc.code), exc.message) from None
