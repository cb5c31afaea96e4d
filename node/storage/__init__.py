"""Storage: the database (SQLAlchemy 2 async, Alembic) and the content-addressed blob store."""
