"""Tables of this area (joined to node.storage.metadata). Times are UNIX seconds (float).

- ``items``: our own catalogue, one row per item ever loaded. Items a newer file no longer
  lists are kept with ``retired`` set, so that cases opened under them still resolve.
- ``partner_catalogs``: the last verified catalogue of each partner, as fetched (``token``)
  and as used (``items``: JSON list of wire items, each with ``"retired": true`` once the
  partner stopped listing it).
"""

from sqlalchemy import Boolean, Column, Float, String, Table, Text

from node.storage.metadata import metadata

items = Table(
    "items",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("handling_region", String(6), nullable=False),
    # The full item in its wire form (protocol.catalog.ITEM_SCHEMA), JSON.
    Column("data", Text, nullable=False),
    Column("retired", Boolean, nullable=False, default=False),
    Column("retired_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)

partner_catalogs = Table(
    "partner_catalogs",
    metadata,
    Column("region", String(6), primary_key=True),
    # The last verified catalogue JWS as received (null until one verified).
    Column("token", Text, nullable=True),
    # JSON list of wire items; ones the partner stopped listing carry "retired": true.
    Column("items", Text, nullable=False, default="[]"),
    # The verified catalogue's iat: an older catalogue never replaces a newer one.
    Column("issued_at", Float, nullable=True),
    # When the last catalogue verified and was stored.
    Column("fetched_at", Float, nullable=True),
    # When we last tried, and why it failed (null after a success).
    Column("attempted_at", Float, nullable=True),
    Column("error", Text, nullable=True),
)
