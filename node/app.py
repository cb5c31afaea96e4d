"""The node's aiohttp application, built in one place and in order: storage (the database,
migrated; the staff token secret; the data keys that seal personal data at rest), federation
transport (sealing its stored envelopes), the case front (on the federation's outbox and
blobs), the video inspection (on the case front), then the federation started with the case
front as its message handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from inspection.holding import Holding
from inspection.hub import InspectionHub, prepare_media
from inspection.scheduler import SessionScheduler
from inspection.views import routes as inspection_routes
from node.accounts.ratelimit import RateLimiter
from node.accounts.service import ensure_token_secret, use_node_dir
from node.accounts.views import routes as account_routes
from node.api.cases import routes as case_routes
from node.api.citizen import routes as citizen_api_routes
from node.api.files import routes as file_routes
from node.appkeys import (
    CASES,
    CITIZEN_LIMITER,
    CONFIG,
    DATABASE,
    DIRECTORY,
    FEDERATION,
    HUB,
    IDENTITY,
    REPLICA,
    VIDEO_DESK,
)
from node.cases.service import CaseService
from node.catalog.items import get_item
from node.catalog.refresher import catalog_refresher_ctx
from node.catalog.views import routes as catalog_routes
from node.config import NodeConfig
from node.federation.directory import following
from node.federation.identity import NodeIdentity
from node.federation.runtime import Federation
from node.federation.views import routes as federation_routes
from node.forwarded import forwarded_middleware
from node.health import routes as health_routes
from node.http_errors import error_middleware
from node.http_timeouts import body_timeout_middleware
from node.identity.provider import RelyingParty
from node.identity.views import CALLBACK_PATH
from node.identity.views import routes as identity_routes
from node.openapi import routes as openapi_routes
from node.ops.janitor import UploadJanitor
from node.pages.apply import routes as apply_routes
from node.pages.citizen import routes as citizen_routes
from node.pages.guide import routes as guide_routes
from node.pages.middleware import session_middleware
from node.pages.office import routes as office_routes
from node.pages.security_headers import security_headers_middleware
from node.pages.supervision import routes as supervision_routes
from node.pages.views import routes as page_routes
from node.pages.window import routes as window_routes
from node.storage.database import Database
from node.storage.migrate import upgrade
from node.storage.sealing import load_sealer
from node.videocalls.desk import CallDesk
from node.videocalls.views import routes as video_routes
from node.workdays.cache import CalendarCache
from node.workdays.views import routes as workday_routes


def create_app(config: NodeConfig, *, replica: str | None = None) -> web.Application:
    """The whole node: federation API, staff and citizen API, pages and video inspection.

    ``replica``: this process's name among the region's replicas (``tongban run`` passes
    ``replica_id`` of its address); a random one (``Holding``'s) when not given."""
    app = web.Application(
        middlewares=[
            # Outermost, so that it watches every body whatever the other middlewares do.
            body_timeout_middleware(config.http.body_timeout),
            forwarded_middleware(config.http.trusted_proxies),
            security_headers_middleware,
            error_middleware,
            session_middleware,
        ],
        client_max_size=2 * 1024 * 1024,
    )
    app[CONFIG] = config
    app[REPLICA] = replica
    app.add_routes(federation_routes())
    for routes in (
        account_routes,
        catalog_routes,
        workday_routes,
        case_routes,
        file_routes,
        citizen_api_routes,
        identity_routes,
        openapi_routes,
        page_routes,
        citizen_routes,
        apply_routes,
        guide_routes,
        office_routes,
        supervision_routes,
        window_routes,
    ):
        app.add_routes(routes())
    app.add_routes(health_routes())
    app.add_routes(inspection_routes())
    app.add_routes(video_routes())
    app.cleanup_ctx.append(_lifecycle)
    app.cleanup_ctx.append(catalog_refresher_ctx)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    db = Database(config.database_url)
    await upgrade(db)
    # The staff token secret is a file of the node directory (moved there from the database
    # of a node made by an older Tongban).
    use_node_dir(db, config.dir)
    await ensure_token_secret(db, config.dir)
    # The data keys (DIR/secrets/data-keys.json, made 0600 at the first start): stored
    # envelopes and applicants' ID numbers and phones are sealed with them.
    sealer = load_sealer(config.dir)
    identity = await NodeIdentity.load(config, db)
    federation = Federation(config, db, identity, sealer)

    def partner_key(kid: str) -> Any:
        key = federation.trust.keys.get(kid)
        return key.public_key if key is not None else None

    service = CaseService(
        db=db,
        region=config.region,
        base_url=config.url,
        outbox=federation.outbox,
        blobs=federation.blobs,
        items=lambda code: get_item(db, code),
        calendar=CalendarCache(db).get,
        partner_keys=partner_key,
        inspections=SessionScheduler(),
        # The federation's sealer follows `tongban keys rotate-data`, so values `tongban keys
        # reseal` moved to a new key open in a running node.
        sealer=federation.sealer,
        deferred_days=config.cases.deferred_days,
        rectification_days=config.cases.rectification_days,
        allow_unverified_online=config.identity.allow_unverified_online,
    )
    identity_provider = RelyingParty(
        config.identity, config.dir, redirect_uri=config.url + CALLBACK_PATH
    )
    prepare_media(config.inspection)
    hub = InspectionHub(
        db=db,
        blobs=federation.blobs,
        root=config.dir / "inspections",
        region=config.region,
        settings=config.inspection,
        identity=lambda: federation.identity,
        cases=service,
        holding=Holding(db, replica=app[REPLICA]),
    )
    # 视频办 reuses the inspection's media machinery (prepared above) for its calls.
    desk = CallDesk(
        db=db,
        blobs=federation.blobs,
        root=config.dir / "videocalls",
        settings=config.videocalls,
        media=config.inspection,
        sealer=federation.sealer,
    )
    await desk.start()
    app[DATABASE] = db
    app[FEDERATION] = federation
    app[VIDEO_DESK] = desk
    app[CASES] = service
    app[HUB] = hub
    app[IDENTITY] = identity_provider
    app[CITIZEN_LIMITER] = RateLimiter(rate_per_minute=10, burst=10)
    janitor = UploadJanitor(db, federation.blobs)
    await federation.start(handler=service.apply_envelope, on_refused=service.refuse_envelope)
    janitor.start()
    hub.start()
    try:
        # The partner directory ([directory] in tongban.toml), put in force in the
        # federation's trust store; the federation starts delivery queues for its regions.
        async with following(config, federation.trust, federation.metrics) as follower:
            app[DIRECTORY] = follower
            yield
    finally:
        await janitor.stop()
        await desk.close()
        await hub.close()
        await identity_provider.close()
        await federation.stop()
        await db.dispose()
