"""The packaged migrations: upgrade/downgrade on SQLite and PostgreSQL, concurrency, storage layout."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from types import ModuleType

import pytest
import structlog
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from common.allinone import discover_services
from common.db import (
    BarRecord,
    Base,
    create_engine,
    downgrade,
    head_revisions,
    migrate,
    storage_kind,
    timescale_available,
)
from common.db.migrate import current_revisions_sync, include_in_autogenerate, main
from common.errors import Operational

FOUNDATION_TABLES = {"processed_messages", "kis_tokens", "ticks", "bars", "features"}


def foundation() -> ModuleType:
    return importlib.import_module("common.db.migrations.versions.0001_foundation")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def revision(engine: AsyncEngine) -> frozenset[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(current_revisions_sync)


async def require_plain_postgres(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        if await timescale_available(conn):
            pytest.skip("this PostgreSQL has TimescaleDB: the partitioned layout is not used")


def bar(ts: datetime, symbol: str = "005930") -> dict[str, object]:
    return {
        "symbol": symbol,
        "timeframe": "1d",
        "ts": ts,
        "open": 70_000,
        "high": 71_000,
        "low": 69_500,
        "close": 70_500,
        "volume": 12_345_678,
        "value": 870_000_000_000,
    }


async def test_upgrade_head_creates_every_foundation_table(database_url: str, engine: AsyncEngine) -> None:
    await migrate(database_url)

    assert await table_names(engine) >= FOUNDATION_TABLES
    assert await revision(engine) == head_revisions()


async def test_downgrade_to_base_then_upgrade_again_works(database_url: str, engine: AsyncEngine) -> None:
    await migrate(database_url)
    await downgrade(database_url, "base")

    assert not FOUNDATION_TABLES & await table_names(engine)
    assert await revision(engine) == frozenset()

    await migrate(database_url)
    assert await table_names(engine) >= FOUNDATION_TABLES
    assert await revision(engine) == head_revisions()


async def test_migrating_twice_is_a_noop_that_keeps_data(database_url: str, engine: AsyncEngine) -> None:
    await migrate(database_url)
    async with engine.begin() as conn:
        await conn.execute(insert(BarRecord), [bar(datetime(2024, 1, 2, tzinfo=UTC))])

    with structlog.testing.capture_logs() as logs:
        await migrate(database_url)

    assert [entry["event"] for entry in logs] == ["db.migrate_noop"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(BarRecord.close))).scalars().all() == [70_500]


async def test_concurrent_migrations_of_a_fresh_database_both_succeed(pg_url: str) -> None:
    await asyncio.gather(migrate(pg_url), migrate(pg_url), migrate(pg_url))

    engine = create_engine(pg_url)
    try:
        assert await table_names(engine) >= FOUNDATION_TABLES
        assert await revision(engine) == head_revisions()
    finally:
        await engine.dispose()


async def test_models_match_the_migrated_schema(database_url: str, engine: AsyncEngine) -> None:
    # Services declare their tables in their own packages: load every installed one so the
    # comparison covers all migrations, not only the tables of common.
    discover_services()
    await migrate(database_url)

    def differences(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"include_object": include_in_autogenerate})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def test_bars_is_range_partitioned_by_year_with_default_and_brin(pg_url: str) -> None:
    await migrate(pg_url)
    engine = create_engine(pg_url)
    try:
        await require_plain_postgres(engine)
        async with engine.connect() as conn:
            strategy = await conn.scalar(
                text("SELECT partstrat::text FROM pg_partitioned_table WHERE partrelid = 'bars'::regclass")
            )
            partitions = set(
                (
                    await conn.execute(
                        text("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'bars'::regclass")
                    )
                ).scalars()
            )
            index_methods = {
                name: method
                for name, method in await conn.execute(
                    text(
                        "SELECT c.relname, am.amname FROM pg_index i "
                        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                        "WHERE i.indrelid = 'bars'::regclass"
                    )
                )
            }
            symbol_ts = await conn.scalar(text("SELECT pg_get_indexdef('ix_bars_symbol_ts'::regclass)"))
        assert strategy == "r"
        assert partitions == {f"bars_y{year}" for year in range(1980, 2041)} | {"bars_default"}
        assert index_methods["ix_bars_ts_brin"] == "brin"
        assert index_methods["pk_bars"] == "btree"
        assert "(symbol, ts DESC)" in symbol_ts
        assert await storage_kind(engine) == "partitioned"
    finally:
        await engine.dispose()


async def test_bars_outside_the_yearly_partitions_land_in_default(pg_url: str) -> None:
    await migrate(pg_url)
    engine = create_engine(pg_url)
    try:
        await require_plain_postgres(engine)
        async with engine.begin() as conn:
            await conn.execute(
                insert(BarRecord),
                [bar(datetime(1990, 6, 1, tzinfo=UTC)), bar(datetime(2050, 6, 1, tzinfo=UTC))],
            )
        async with engine.connect() as conn:
            placed = {
                year: partition
                for year, partition in await conn.execute(
                    text("SELECT extract(year FROM ts)::int, tableoid::regclass::text FROM bars")
                )
            }
        assert placed == {1990: "bars_y1990", 2050: "bars_default"}
    finally:
        await engine.dispose()


async def test_duplicate_bar_key_is_rejected(database_url: str, engine: AsyncEngine) -> None:
    await migrate(database_url)
    row = bar(datetime(2024, 3, 4, 6, 0, tzinfo=UTC))
    async with engine.begin() as conn:
        await conn.execute(insert(BarRecord), [row])

    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(BarRecord), [row | {"close": 1}])


async def test_storage_kind_reports_the_backend(database_url: str, engine: AsyncEngine) -> None:
    await migrate(database_url)

    expected = "sqlite" if engine.dialect.name == "sqlite" else "partitioned"
    if engine.dialect.name == "postgresql":
        await require_plain_postgres(engine)
    assert await storage_kind(engine) == expected


async def test_storage_kind_refuses_an_unmigrated_postgres(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with pytest.raises(Operational, match="tradebot-migrate"):
            await storage_kind(engine)
    finally:
        await engine.dispose()


def test_timescale_path_renders_hypertables_with_compression() -> None:
    statements = foundation().timeseries_ddl("postgresql", timescale=True)
    sql = "\n".join(statements)

    assert statements[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    assert "PARTITION" not in sql
    assert "brin" not in sql
    assert "SELECT create_hypertable('ticks', 'ts', chunk_time_interval => INTERVAL '7 days')" in statements
    assert "SELECT create_hypertable('bars', 'ts', chunk_time_interval => INTERVAL '30 days')" in statements
    assert "SELECT create_hypertable('features', 'ts', chunk_time_interval => INTERVAL '30 days')" in statements
    for table in ("ticks", "bars", "features"):
        assert f"CREATE INDEX ix_{table}_symbol_ts ON {table} (symbol, ts DESC)" in statements
        assert any(
            s.startswith(f"ALTER TABLE {table} SET (timescaledb.compress,") and "compress_segmentby = 'symbol'" in s
            for s in statements
        )
        assert any(s.startswith(f"SELECT add_compression_policy('{table}', INTERVAL") for s in statements)
    assert "JSONB" in sql


def test_partitioned_path_renders_yearly_partitions_default_and_indexes() -> None:
    statements = foundation().timeseries_ddl("postgresql", timescale=False)

    assert not any("timescaledb" in s or "create_hypertable" in s for s in statements)
    for table in ("ticks", "bars", "features"):
        create = next(s for s in statements if s.startswith(f"CREATE TABLE {table} ("))
        assert create.endswith("PARTITION BY RANGE (ts)")
        yearly = [s for s in statements if s.startswith(f"CREATE TABLE {table}_y")]
        assert len(yearly) == 61
        assert f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT" in statements
        assert f"CREATE INDEX ix_{table}_ts_brin ON {table} USING brin (ts)" in statements
    assert (
        "CREATE TABLE ticks_y1980 PARTITION OF ticks "
        "FOR VALUES FROM ('1980-01-01 00:00:00+00') TO ('1981-01-01 00:00:00+00')"
    ) in statements
    assert any(s.startswith("CREATE TABLE ticks_y2040 ") for s in statements)


def test_timescale_is_refused_on_sqlite() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        foundation().timeseries_ddl("sqlite", timescale=True)


@pytest.fixture
def cli_logs() -> Iterator[None]:
    # main() configures structlog for the command line only when nothing else has.
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("cli_logs")
def test_cli_migrates_from_the_environment_url(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRADEBOT_DATABASE_URL", sqlite_url)

    assert main([]) == 0

    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "db.migrated" in err


@pytest.mark.usefixtures("cli_logs")
def test_cli_without_a_url_exits_with_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TRADEBOT_DATABASE_URL", raising=False)

    assert main([]) == 2
    assert "TRADEBOT_DATABASE_URL" in capsys.readouterr().err


@pytest.mark.usefixtures("cli_logs")
def test_cli_failure_exits_nonzero_without_printing_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "postgresql://trader:hunter2-secret@127.0.0.1:1/tradebot"]) == 1

    out, err = capsys.readouterr()
    assert "db.migrate_failed" in err
    assert "unreachable" in err
    assert "hunter2-secret" not in out + err


@pytest.mark.usefixtures("cli_logs")
def test_cli_does_not_echo_the_password_of_an_unparseable_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "mysql://trader:hunter2-secret@db/tradebot"]) == 1

    out, err = capsys.readouterr()
    assert "unsupported database driver" in err
    assert "hunter2-secret" not in out + err
