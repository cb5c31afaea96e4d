"""Tables of this area (joined to node.storage.metadata)."""

from node.storage.metadata import metadata  # noqa: F401
