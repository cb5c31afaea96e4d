"""Tables of this area (joined to node.storage.metadata). Times are UNIX seconds (float).

- ``items``: our own catalogue, one row per item ever loaded. Items a newer file no longer
  lists are kept with ``retired`` set, so that cases opened under them still resolve.
- ``partner_catalogs``: the last verified catalogue of each partner, as fetched (``token``)
  and as used (``items``: JSON list of wire items, each with ``"retired": true`` once the
  partner stopped listing it).
"""

from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, Text
from sqlalchemy.dialects.postgresql import ARRAY

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
    # The ETag the partner sent with the catalogue we hold (If-None-Match of the next fetch).
    Column("etag", String(100), nullable=True),
    # When the partner last confirmed our copy current: a 200 stored or a 304 answered.
    Column("checked_at", Float, nullable=True),
)

# -- the search index (node/catalog/index.py writes it, node/catalog/search.py reads it) -------
#
# One row per *current* item, ours and every partner's: retired items are not in it. Kept in
# step with ``items`` and ``partner_catalogs`` in the same transaction that stores them. The
# full-text parts are not SQLAlchemy tables (migration 0018_catalog_search): on SQLite two FTS5
# tables ``catalog_search`` (trigram, external content over code/name/department/place) and
# ``catalog_grams`` (contentless, the 1- and 2-character grams); on PostgreSQL pg_trgm and
# array GIN indexes over expressions of these columns. docs/catalog.md §6.

catalog_entries = Table(
    "catalog_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code", String(40), nullable=False, unique=True),
    Column("handling_region", String(6), nullable=False),
    # Two-digit province prefix of handling_region ("" when unknown).
    Column("province", String(2), nullable=False),
    Column("name", String(200), nullable=False),
    Column("department", String(100), nullable=False),
    # Province and region name for people, searched too: "湖南省 衡阳市".
    Column("place", String(200), nullable=False),
    # Space-separated modes, each between spaces: " proxy online ".
    Column("modes", String(40), nullable=False),
    Column("own", Boolean, nullable=False),
    # JSON: what the chooser shows of the item (limits, inspection, material counts).
    Column("summary", Text, nullable=False),
    # PostgreSQL only (NULL on SQLite, whose FTS5 table holds them): the 1- and 2-character
    # grams (index.grams), under a GIN index.
    Column("grams", Text().with_variant(ARRAY(Text), "postgresql"), nullable=True),
    Index("ix_catalog_entries_handling_region_code", "handling_region", "code"),
    Index("ix_catalog_entries_province_code", "province", "code"),
    Index("ix_catalog_entries_own_code", "own", "code"),
)

#: Every region with items in the index, with its name (the chooser's region filter).
catalog_regions = Table(
    "catalog_regions",
    metadata,
    Column("region", String(6), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("province", String(2), nullable=False),
    Column("items", Integer, nullable=False),
    # Our own region (the search's "own items" tier reaches them by region, not by a boolean).
    Column("own", Boolean, nullable=False),
)
