"""The client's address behind a reverse proxy (``[http] trusted_proxies``).

``request.remote`` is the TCP peer: behind nginx that is nginx, so every citizen would share
one rate-limit bucket. When, and only when, the peer is a trusted proxy, the address is taken
from ``X-Forwarded-For``, walked right to left (each proxy appends the address it saw) and
skipping trusted hops: the first address that is not a trusted proxy is the client. Anything
left of it was written by the client and is never believed. From an untrusted peer the header
is ignored altogether.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _address(text: str) -> Address | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]
) -> str | None:
    """The client's address: ``peer`` unless ``peer`` is a trusted proxy, then the rightmost
    ``X-Forwarded-For`` entry that is not a trusted proxy (or the leftmost one if all are).
    A malformed entry ends the walk at the last hop that could be read."""
    if not networks or peer is None:
        return peer
    current = _address(peer)
    if current is None or not _trusted(current, networks):
        return peer
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, networks):
            break
    return str(current)


def forwarded_middleware(
    trusted_proxies: Iterable[str],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware (first in the list) that gives handlers the client's address as
    ``request.remote``."""
    networks = parse_networks(trusted_proxies)

    @web.middleware
    async def forwarded(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if networks:
            remote = client_address(
                request.remote, request.headers.getall("X-Forwarded-For", []), networks
            )
            if remote != request.remote:
                request = request.clone(remote=remote)
        return await handler(request)

    return forwarded
