"""Typed keys of every object the aiohttp application holds (one place, no import cycles)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from inspection.hub import InspectionHub
    from node.accounts.ratelimit import LoginThrottle, RateLimiter
    from node.cases.service import CaseService
    from node.catalog.refresher import CatalogRefresher
    from node.config import NodeConfig
    from node.federation.directory import DirectoryFollower
    from node.federation.runtime import Federation
    from node.identity.provider import RelyingParty
    from node.storage.database import Database
    from node.videocalls.desk import CallDesk

CONFIG: web.AppKey[NodeConfig] = web.AppKey("config")
#: This process's name among the region's replicas (inspection/holding.py, ``replica_id``);
#: None: a random one.
REPLICA: web.AppKey[str | None] = web.AppKey("replica")
DATABASE: web.AppKey[Database] = web.AppKey("database")
FEDERATION: web.AppKey[Federation] = web.AppKey("federation")
#: The case front: every change of a case goes through it.
CASES: web.AppKey[CaseService] = web.AppKey("cases")
#: Citizens' look-ups, uploads and online applications (per client; look-ups also per case).
CITIZEN_LIMITER: web.AppKey[RateLimiter] = web.AppKey("citizen_limiter")
CATALOG_REFRESHER: web.AppKey[CatalogRefresher] = web.AppKey("catalog_refresher")
#: Failed logins per address (a test may install a faster one).
LOGIN_LIMITER: web.AppKey[LoginThrottle] = web.AppKey("login_limiter")
HUB: web.AppKey[InspectionHub] = web.AppKey("inspection_hub")
#: This node as a client of the province's identity service (统一身份认证), for 全程网办.
IDENTITY: web.AppKey[RelyingParty] = web.AppKey("identity")
#: The partner directory follower (None when tongban.toml has no [directory]).
DIRECTORY: web.AppKey[DirectoryFollower | None] = web.AppKey("directory")
#: 视频办: the queue of citizens calling the hall and the calls in progress.
VIDEO_DESK: web.AppKey[CallDesk] = web.AppKey("video_desk")
