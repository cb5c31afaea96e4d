"""The OpenAPI document describes every API route the node serves, and nothing it does not.

Pages (HTML for people, node/pages) and static files are not part of the API."""

from __future__ import annotations

from pathlib import Path

from node.app import create_app
from node.config import NodeConfig
from node.openapi import spec

API_PREFIXES = (
    "/api/",
    "/federation/",
    "/inspection/v1/",
    "/.well-known/",
    "/metrics",
    "/healthz",
    "/readyz",
)


def test_every_served_route_is_described_and_every_description_is_served() -> None:
    app = create_app(
        NodeConfig.from_dict(
            Path("/nonexistent"),
            {"region": "430400", "name": "衡阳市", "url": "http://127.0.0.1:1"},
        )
    )
    described = {(path, method.upper()) for path, ops in spec()["paths"].items() for method in ops}
    served = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and path.startswith(API_PREFIXES):
            served.add((path, route.method))
    assert served == described
