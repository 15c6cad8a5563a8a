"""Foundation: inbox, KIS token cache and the time-series tables ticks, bars, features.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 00:00:00+00:00

The time-series storage is decided here, at migration time: hypertables with compression when
TimescaleDB is usable, otherwise yearly range partitions (1980–2040 plus DEFAULT) with a BRIN
index on ``ts``; plain tables on SQLite. The DDL is spelled out in this file, not imported,
so that this revision keeps creating what it created the day it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateTable

from common.db.storage import timescale_available_sync

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESERIES_TABLES = ("ticks", "bars", "features")
PARTITION_YEARS = range(1980, 2041)

# Chunks hold about one chunk's worth of hot data in memory; compression waits until late
# corrections (re-collected bars, late ticks) have become rare.
_TIMESCALE_LAYOUT = {
    # table: (chunk_time_interval, compress_after, compress_orderby)
    "ticks": ("7 days", "14 days", "ts DESC, seq DESC"),
    "bars": ("30 days", "90 days", "timeframe, ts DESC"),
    "features": ("30 days", "90 days", "timeframe, feature_set, ts DESC"),
}


def _ts() -> sa.Column[Any]:
    return sa.Column("ts", sa.DateTime(timezone=True), nullable=False)


def _symbol() -> sa.Column[Any]:
    return sa.Column("symbol", sa.String(7), nullable=False)


def _timeframe() -> sa.Column[Any]:
    return sa.Column("timeframe", sa.String(4), nullable=False)


def timeseries_tables(metadata: sa.MetaData, *, partitioned: bool) -> list[sa.Table]:
    """``ticks``, ``bars`` and ``features``; ``partitioned`` adds PostgreSQL's PARTITION BY RANGE (ts)."""
    storage: dict[str, Any] = {"postgresql_partition_by": "RANGE (ts)"} if partitioned else {}
    ticks = sa.Table(
        "ticks",
        metadata,
        _symbol(),
        _ts(),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("cum_volume", sa.BigInteger(), nullable=True),
        sa.Column("side", sa.String(4), nullable=True),
        sa.PrimaryKeyConstraint("symbol", "ts", "seq", name="pk_ticks"),
        **storage,
    )
    bars = sa.Table(
        "bars",
        metadata,
        _symbol(),
        _timeframe(),
        _ts(),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in ("open", "high", "low", "close", "volume")),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "ts", name="pk_bars"),
        **storage,
    )
    features = sa.Table(
        "features",
        metadata,
        _symbol(),
        _timeframe(),
        _ts(),
        sa.Column("feature_set", sa.String(64), nullable=False),
        sa.Column("values", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "ts", "feature_set", name="pk_features"),
        **storage,
    )
    return [ticks, bars, features]


def timeseries_ddl(dialect_name: str, *, timescale: bool = False) -> list[str]:
    """The statements that create ``ticks``, ``bars`` and ``features`` on this backend.

    PostgreSQL with ``timescale``: hypertables on ``ts`` with compression (segment by symbol);
    without: yearly range partitions 1980–2040 and a DEFAULT partition, a BRIN index on ``ts``
    and a btree on ``(symbol, ts DESC)``. SQLite: plain tables with the same ``(symbol, ts DESC)`` index.
    """
    drivers = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
    dialect = make_url(f"{drivers[dialect_name]}://").get_dialect()()
    on_postgres = dialect_name == "postgresql"
    if timescale and not on_postgres:
        raise ValueError("TimescaleDB exists only on PostgreSQL")
    partitioned = on_postgres and not timescale

    statements: list[str] = []
    if timescale:
        statements.append("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for table in timeseries_tables(sa.MetaData(), partitioned=partitioned):
        name = table.name
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        if partitioned:
            statements.extend(
                f"CREATE TABLE {name}_y{year} PARTITION OF {name} "
                f"FOR VALUES FROM ('{year}-01-01 00:00:00+00') TO ('{year + 1}-01-01 00:00:00+00')"
                for year in PARTITION_YEARS
            )
            statements.append(f"CREATE TABLE {name}_default PARTITION OF {name} DEFAULT")
            statements.append(f"CREATE INDEX ix_{name}_ts_brin ON {name} USING brin (ts)")
        if timescale:
            chunk, _, _ = _TIMESCALE_LAYOUT[name]
            statements.append(f"SELECT create_hypertable('{name}', 'ts', chunk_time_interval => INTERVAL '{chunk}')")
        statements.append(f"CREATE INDEX ix_{name}_symbol_ts ON {name} (symbol, ts DESC)")
        if timescale:
            _, compress_after, orderby = _TIMESCALE_LAYOUT[name]
            statements.append(
                f"ALTER TABLE {name} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = '{orderby}')"
            )
            statements.append(f"SELECT add_compression_policy('{name}', INTERVAL '{compress_after}')")
    return statements


def upgrade() -> None:
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(128), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name="pk_processed_messages"),
    )
    op.create_index("ix_processed_messages_processed_at", "processed_messages", ["processed_at"])
    op.create_table(
        "kis_tokens",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(8), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_kis_tokens"),
        sa.CheckConstraint("domain IN ('real', 'paper')", name="ck_kis_tokens_domain"),
    )
    bind = op.get_bind()
    timescale = timescale_available_sync(bind)
    for statement in timeseries_ddl(bind.dialect.name, timescale=timescale):
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    # Dropping a partitioned table or hypertable drops its partitions/chunks with it. The
    # timescaledb extension stays: other schemas of this database may use it.
    for name in (*reversed(TIMESERIES_TABLES), "kis_tokens", "processed_messages"):
        op.drop_table(name)
