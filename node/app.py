"""The node's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from node.accounts.views import routes as account_routes
from node.appkeys import CONFIG, DATABASE
from node.cases.views import routes as case_routes
from node.catalog.views import routes as catalog_routes
from node.config import NodeConfig
from node.federation.identity import NodeIdentity
from node.federation.runtime import Federation
from node.federation.views import FEDERATION
from node.federation.views import routes as federation_routes
from node.http_errors import error_middleware
from node.storage.database import Database
from node.storage.migrate import upgrade
from node.workdays.views import routes as workday_routes


def create_app(config: NodeConfig) -> web.Application:
    """The whole node: federation API now; cases, staff API and pages join here."""
    app = web.Application(middlewares=[error_middleware], client_max_size=2 * 1024 * 1024)
    app[CONFIG] = config
    app.add_routes(federation_routes())
    for routes in (account_routes, catalog_routes, workday_routes, case_routes):
        app.add_routes(routes())
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    db = Database(config.database_url)
    await upgrade(db)
    identity = await NodeIdentity.load(config, db)
    federation = Federation(config, db, identity)
    app[DATABASE] = db
    app[FEDERATION] = federation
    await federation.start()
    try:
        yield
    finally:
        await federation.stop()
        await db.dispose()
