"""catalog search: the index of every current item, ours and partners'; conditional refresh

- ``catalog_entries`` / ``catalog_regions``: one row per current item and per region
  (node/catalog/index.py keeps them in step with ``items`` and ``partner_catalogs``).
- SQLite: FTS5 ``catalog_search`` (trigram tokenizer, external content over
  ``catalog_entries``) and contentless FTS5 ``catalog_grams`` (the 1- and 2-character grams).
- PostgreSQL: pg_trgm GIN index over the searched text and a GIN index over its grams
  (the ``grams`` column, filled by node/catalog/index.py), a C-collated name index for name
  prefixes and a text_pattern_ops code index for code prefixes.
- ``partner_catalogs.etag`` / ``checked_at``: conditional fetches (If-None-Match, 304).

The index starts empty; the node fills it from the cached catalogues at start
(node/catalog/index.py ``ensure_index``).

Revision ID: 0018_catalog_search
Revises: 0017_video_calls, 0004_catalog
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018_catalog_search"
down_revision: str | Sequence[str] | None = ("0017_video_calls", "0004_catalog")
branch_labels: str | Sequence[str] | None = None
# Also merges the catalogue's branch from 0001 (its tables are indexed here).
depends_on: str | Sequence[str] | None = None

# Keep in step with node/catalog/index.py (PG_TEXT).
PG_TEXT = "lower(code || ' ' || name || ' ' || department || ' ' || place)"


def upgrade() -> None:
    op.add_column("partner_catalogs", sa.Column("etag", sa.String(length=100), nullable=True))
    op.add_column("partner_catalogs", sa.Column("checked_at", sa.Float(), nullable=True))
    op.create_table(
        "catalog_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("handling_region", sa.String(length=6), nullable=False),
        sa.Column("province", sa.String(length=2), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("department", sa.String(length=100), nullable=False),
        sa.Column("place", sa.String(length=200), nullable=False),
        sa.Column("modes", sa.String(length=40), nullable=False),
        sa.Column("own", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column(
            "grams",
            sa.Text().with_variant(postgresql.ARRAY(sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_entries")),
        sa.UniqueConstraint("code", name=op.f("uq_catalog_entries_code")),
    )
    op.create_index(
        "ix_catalog_entries_handling_region_code", "catalog_entries", ["handling_region", "code"]
    )
    op.create_index("ix_catalog_entries_province_code", "catalog_entries", ["province", "code"])
    op.create_index("ix_catalog_entries_own_code", "catalog_entries", ["own", "code"])
    op.create_table(
        "catalog_regions",
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("province", sa.String(length=2), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("own", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("region", name=op.f("pk_catalog_regions")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            'CREATE INDEX ix_catalog_entries_name ON catalog_entries (name COLLATE "C", code)'
        )
        op.execute(
            "CREATE INDEX ix_catalog_entries_code_pattern ON catalog_entries "
            "(code text_pattern_ops)"
        )
        op.execute(
            f"CREATE INDEX ix_catalog_entries_trgm ON catalog_entries USING gin ({PG_TEXT} gin_trgm_ops)"
        )
        op.execute("CREATE INDEX ix_catalog_entries_grams ON catalog_entries USING gin (grams)")
    else:
        op.create_index("ix_catalog_entries_name", "catalog_entries", ["name", "code"])
        op.execute(
            "CREATE VIRTUAL TABLE catalog_search USING fts5(code, name, department, place, "
            "content='catalog_entries', content_rowid='id', tokenize='trigram')"
        )
        op.execute(
            "CREATE VIRTUAL TABLE catalog_grams USING fts5(grams, content='', tokenize='unicode61')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_catalog_entries_grams", table_name="catalog_entries")
        op.drop_index("ix_catalog_entries_code_pattern", table_name="catalog_entries")
        op.drop_index("ix_catalog_entries_trgm", table_name="catalog_entries")
    else:
        op.execute("DROP TABLE IF EXISTS catalog_grams")
        op.execute("DROP TABLE IF EXISTS catalog_search")
    op.drop_index("ix_catalog_entries_name", table_name="catalog_entries")
    op.drop_table("catalog_regions")
    op.drop_index("ix_catalog_entries_own_code", table_name="catalog_entries")
    op.drop_index("ix_catalog_entries_province_code", table_name="catalog_entries")
    op.drop_index("ix_catalog_entries_handling_region_code", table_name="catalog_entries")
    op.drop_table("catalog_entries")
    op.drop_column("partner_catalogs", "checked_at")
    op.drop_column("partner_catalogs", "etag")
