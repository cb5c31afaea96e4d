"""Serving HTTPS directly from `tongban run` (``tls_cert``/``tls_key`` in tongban.toml).

In production a TLS proxy (nginx, see docker/) usually terminates HTTPS; a node can also serve
it itself, e.g. a small region with one process and no proxy.
"""

from __future__ import annotations

import ssl

from node.config import ConfigError, NodeConfig


def server_ssl_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The server-side TLS context, or None when the node serves plain HTTP."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert/tls_key cannot be loaded: {exc}") from exc
    return context
