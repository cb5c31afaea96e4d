"""Calendar tables: the years an admin loaded, and their holidays and make-up workdays.

Years not in ``calendar_years`` come from the packaged default (node.workdays.defaults). Times
are UNIX seconds (float), like every other table.
"""

from sqlalchemy import CheckConstraint, Column, Date, Float, ForeignKey, Integer, String, Table

from node.storage.metadata import metadata

#: One row per loaded year; a reload replaces the year's row and days in one transaction.
calendar_years = Table(
    "calendar_years",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    # The file name and the notice it transcribes (国办发明电〔…〕…号).
    Column("source", String(500), nullable=False),
    Column("loaded_at", Float, nullable=False),
    Column("loaded_by", String(100), nullable=False),
    # Raised by every load (max + 1): a process holding a cached calendar compares the
    # table's highest version with its own to know it must reload.
    Column("version", Integer, nullable=False),
)

#: The exceptions to "Monday to Friday" of a loaded year.
calendar_days = Table(
    "calendar_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("year", Integer, ForeignKey("calendar_years.year"), nullable=False, index=True),
    # "holiday": a day off (法定节假日, weekends inside the holiday included);
    # "workday": a Saturday or Sunday worked to make up for one (调休上班).
    Column("kind", String(10), nullable=False),
    # The holiday's name; for a workday, the holiday it makes up for.
    Column("name", String(100), nullable=False),
    CheckConstraint("kind IN ('holiday', 'workday')", name="kind"),
)
