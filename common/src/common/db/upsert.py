"""Insert-or-ignore, the idempotent write every consumer uses (redelivery never duplicates)."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.dml import Insert


def insert_ignoring_duplicates(table: Table | type[DeclarativeBase], dialect_name: str) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` for a table or mapped class on PostgreSQL or SQLite.

    Rows whose key already exists are skipped; the result's ``rowcount`` counts the rows
    really inserted.
    """
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"insert-or-ignore is not implemented for {dialect_name!r}")
