"""Typed keys of the objects the aiohttp application holds (one place, no import cycles)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from node.config import NodeConfig
    from node.storage.database import Database

CONFIG: web.AppKey[NodeConfig] = web.AppKey("config")
DATABASE: web.AppKey[Database] = web.AppKey("database")
