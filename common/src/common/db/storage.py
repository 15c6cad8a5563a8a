"""How the time-series tables are stored on this database: TimescaleDB, partitions or SQLite."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.errors import Operational, Unavailable

from .engine import redact_url

StorageKind = Literal["timescaledb", "partitioned", "sqlite"]

# Available is not enough: CREATE EXTENSION timescaledb fails unless the library is preloaded.
_TIMESCALE_USABLE = text(
    """
    SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND (EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
            OR current_setting('shared_preload_libraries') LIKE '%timescaledb%')
    """
)
_TIMESCALE_INSTALLED = text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
_BARS_IS_HYPERTABLE = text(
    "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'bars')"
)
_BARS_IS_PARTITIONED = text("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('bars'))")


def timescale_available_sync(conn: Connection) -> bool:
    """Whether TimescaleDB can be used on this PostgreSQL server (for migrations, which run sync)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(_TIMESCALE_USABLE).scalar_one())


async def timescale_available(conn: AsyncConnection) -> bool:
    """Whether TimescaleDB is installed or installable (available and preloaded) on this server."""
    return await conn.run_sync(timescale_available_sync)


def _storage_kind_sync(conn: Connection) -> StorageKind:
    if conn.dialect.name == "sqlite":
        return "sqlite"
    if conn.execute(_TIMESCALE_INSTALLED).scalar_one() and conn.execute(_BARS_IS_HYPERTABLE).scalar_one():
        return "timescaledb"
    if conn.execute(_BARS_IS_PARTITIONED).scalar_one():
        return "partitioned"
    raise Operational("time-series tables are missing or unrecognised: run tradebot-migrate")


async def storage_kind(engine: AsyncEngine) -> StorageKind:
    """How ``ticks``/``bars``/``features`` are stored, for readiness and operations reports.

    Raises ``Unavailable`` if the database cannot be reached and ``Operational`` if it has not
    been migrated.
    """
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_storage_kind_sync)
    except (SQLAlchemyError, OSError) as e:
        raise Unavailable(f"database {redact_url(engine.url)} unreachable", detail={"error": type(e).__name__}) from e
