"""The database layer: engines, models, the inbox and the request-owned session, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import structlog
from fastapi import FastAPI
from sqlalchemy import Column, MetaData, Select, String, Table, Uuid, func, insert, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.clock import FixedClock
from common.contracts import Envelope, ModelPromotedV1
from common.db import (
    FeatureRecord,
    KisToken,
    ProcessedMessage,
    SessionDep,
    create_engine,
    create_sessionmaker,
    idempotent,
    kis_token_key,
    migrate,
    normalise_url,
    ping,
    prune_inbox,
    redact_url,
)
from common.errors import Conflict, Operational, Unavailable, install_error_handlers

KST = ZoneInfo("Asia/Seoul")
CONSUMER = "data-processor.bars"

# A table of the tests' own: rows without a key, so a duplicate effect would show as two rows.
effects = Table(
    "test_effects",
    MetaData(),
    Column("consumer", String(128), nullable=False),
    Column("message_id", Uuid(), nullable=False),
)


@dataclass
class Db:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    async def count(self, statement: Select[int]) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(statement)).scalar_one()

    async def effect_count(self, message_id: uuid.UUID | None = None) -> int:
        statement = select(func.count()).select_from(effects)
        if message_id is not None:
            statement = statement.where(effects.c.message_id == message_id)
        return await self.count(statement)

    async def inbox_count(self) -> int:
        return await self.count(select(func.count()).select_from(ProcessedMessage))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    await migrate(database_url)
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(effects.create)
    yield Db(engine, create_sessionmaker(engine))
    await engine.dispose()


def envelope() -> Envelope:
    payload = ModelPromotedV1(
        model_id=uuid.uuid4(),
        version="2024.06.01-1",
        artifact_uri="file:///models/a3c.pt",
        promoted_at=datetime(2024, 6, 1, tzinfo=UTC),
    )
    return Envelope(producer="model-trainer", correlation_id="corr-1", payload=payload)


async def record_effect(session: AsyncSession, message: Envelope) -> None:
    await session.execute(insert(effects).values(consumer=CONSUMER, message_id=message.message_id))


# --- engine ------------------------------------------------------------------------------------


def test_plain_postgresql_url_is_normalised_to_asyncpg() -> None:
    assert normalise_url("postgresql://u:p@db:5432/tradebot").drivername == "postgresql+asyncpg"
    assert normalise_url("postgres://u@db/tradebot").drivername == "postgresql+asyncpg"
    assert normalise_url("sqlite:///var/tradebot.db").drivername == "sqlite+aiosqlite"


def test_unsupported_driver_is_refused_without_echoing_the_password() -> None:
    with pytest.raises(Operational, match="unsupported database driver") as caught:
        normalise_url("mysql+aiomysql://u:topsecret@db/tradebot")
    assert "topsecret" not in str(caught.value)


def test_redact_url_masks_the_password() -> None:
    assert redact_url("postgresql+asyncpg://u:topsecret@db/x") == "postgresql+asyncpg://u:***@db/x"
    assert "topsecret" not in redact_url("postgresql://u:topsecret@db:notaport/x")


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            journal = await conn.scalar(text("PRAGMA journal_mode"))
            foreign_keys = await conn.scalar(text("PRAGMA foreign_keys"))
            busy_timeout = await conn.scalar(text("PRAGMA busy_timeout"))
    finally:
        await engine.dispose()
    assert (journal, foreign_keys) == ("wal", 1)
    assert busy_timeout >= 1000


async def test_sqlite_rollback_undoes_ddl_too(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)

    async def create_then_fail() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE scratch (id INTEGER)"))
            raise RuntimeError("abort")

    try:
        with pytest.raises(RuntimeError):
            await create_then_fail()
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM sqlite_master WHERE name = 'scratch'")) == 0
    finally:
        await engine.dispose()


async def test_ping_succeeds_on_a_reachable_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await ping(engine)
    finally:
        await engine.dispose()


async def test_ping_raises_unavailable_quickly_for_an_unreachable_database() -> None:
    engine = create_engine("postgresql://trader:topsecret@127.0.0.1:1/tradebot")
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable) as caught:
            await ping(engine)
    finally:
        await engine.dispose()
    assert time.monotonic() - started < 3
    assert caught.value.__cause__ is not None
    assert "topsecret" not in caught.value.message


# --- models ------------------------------------------------------------------------------------


async def test_datetimes_come_back_aware_in_utc(db: Db) -> None:
    issued = datetime(2024, 6, 3, 9, 0, tzinfo=KST)
    async with db.sessionmaker.begin() as session:
        session.add(
            KisToken(
                key_id=kis_token_key("paper", "PSappkey"),
                domain="paper",
                access_token="token",
                issued_at=issued,
                expires_at=issued + timedelta(hours=24),
            )
        )
    async with db.sessionmaker() as session:
        token = (await session.execute(select(KisToken))).scalar_one()

    assert token.issued_at == issued
    assert token.issued_at.utcoffset() == timedelta(0)
    assert token.issued_at.hour == 0


async def test_naive_datetimes_are_refused(db: Db) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with db.sessionmaker.begin() as session:
            session.add(ProcessedMessage(consumer=CONSUMER, message_id=uuid.uuid4(), processed_at=datetime(2024, 1, 1)))


async def test_feature_values_round_trip_as_json(db: Db) -> None:
    values = {"rsi_14": 55.25, "ma_20": 70_125.5, "regime": None}
    async with db.sessionmaker.begin() as session:
        session.add(
            FeatureRecord(
                symbol="005930",
                timeframe="1d",
                ts=datetime(2024, 6, 3, tzinfo=UTC),
                feature_set="base.v1",
                values=values,
            )
        )
    async with db.sessionmaker() as session:
        assert (await session.execute(select(FeatureRecord.values))).scalar_one() == values


async def test_kis_token_domain_must_be_real_or_paper(db: Db) -> None:
    now = datetime(2024, 6, 3, tzinfo=UTC)
    with pytest.raises(IntegrityError):
        async with db.sessionmaker.begin() as session:
            session.add(KisToken(key_id="k", domain="demo", access_token="t", issued_at=now, expires_at=now))


def test_kis_token_key_is_a_stable_digest_that_hides_the_appkey() -> None:
    key = kis_token_key("real", "PSVT1234appkey")

    assert key == kis_token_key("real", "PSVT1234appkey")
    assert key != kis_token_key("paper", "PSVT1234appkey")
    assert len(key) == 64
    assert "PSVT1234appkey" not in key


# --- inbox -------------------------------------------------------------------------------------


async def test_redelivered_message_is_applied_once(db: Db) -> None:
    handle = idempotent(CONSUMER, db.sessionmaker, record_effect)
    message = envelope()

    with structlog.testing.capture_logs() as logs:
        await handle(message)
        await handle(message)

    assert await db.effect_count(message.message_id) == 1
    assert await db.inbox_count() == 1
    skipped = [entry for entry in logs if entry["event"] == "bus.duplicate_skipped"]
    assert len(skipped) == 1
    assert skipped[0]["message_id"] == str(message.message_id)


async def test_failed_handler_leaves_no_claim_so_the_retry_applies_once(db: Db) -> None:
    attempts = 0

    async def flaky(session: AsyncSession, message: Envelope) -> None:
        nonlocal attempts
        attempts += 1
        await record_effect(session, message)
        if attempts == 1:
            raise RuntimeError("broker hiccup after the write")

    handle = idempotent(CONSUMER, db.sessionmaker, flaky)
    message = envelope()

    with pytest.raises(RuntimeError):
        await handle(message)
    assert await db.inbox_count() == 0
    assert await db.effect_count() == 0

    await handle(message)
    await handle(message)
    assert attempts == 2
    assert await db.effect_count(message.message_id) == 1


async def test_concurrent_deliveries_of_one_message_apply_exactly_once(db: Db) -> None:
    async def slow_effect(session: AsyncSession, message: Envelope) -> None:
        await record_effect(session, message)
        # Hold the claim's transaction open so the other deliveries really overlap it.
        await asyncio.sleep(0.2)

    handle = idempotent(CONSUMER, db.sessionmaker, slow_effect)
    message = envelope()

    await asyncio.gather(*(handle(message) for _ in range(5)))

    assert await db.effect_count(message.message_id) == 1
    assert await db.inbox_count() == 1


async def test_each_consumer_applies_the_same_message_once(db: Db) -> None:
    message = envelope()
    for consumer in ("trader.fills", "web-interface.fills"):
        handle = idempotent(consumer, db.sessionmaker, record_effect)
        await handle(message)
        await handle(message)

    assert await db.effect_count(message.message_id) == 2
    assert await db.inbox_count() == 2


async def test_prune_inbox_removes_only_claims_older_than_the_cutoff(db: Db) -> None:
    clock = FixedClock(datetime(2024, 6, 1, tzinfo=UTC))
    handle = idempotent(CONSUMER, db.sessionmaker, record_effect, clock=clock)
    await handle(envelope())
    clock.advance(timedelta(days=10))
    recent = envelope()
    await handle(recent)

    removed = await prune_inbox(db.sessionmaker, datetime(2024, 6, 5, tzinfo=UTC))

    assert removed == 1
    async with db.sessionmaker() as session:
        remaining = (await session.execute(select(ProcessedMessage.message_id))).scalars().all()
    assert remaining == [recent.message_id]


# --- request-owned session ---------------------------------------------------------------------


def token_app(sessionmaker: async_sessionmaker[AsyncSession]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.sessionmaker = sessionmaker

    @app.post("/tokens/{key_id}")
    async def store_token(key_id: str, session: SessionDep, fail: str | None = None) -> dict[str, str]:
        now = datetime(2024, 6, 3, tzinfo=UTC)
        session.add(KisToken(key_id=key_id, domain="paper", access_token="t", issued_at=now, expires_at=now))
        await session.flush()
        if fail == "at-commit":
            # Violates the domain check only when the dependency flushes it at commit.
            session.add(KisToken(key_id="other", domain="demo", access_token="t", issued_at=now, expires_at=now))
        if fail == "conflict":
            raise Conflict("token already being refreshed")
        if fail == "bug":
            raise RuntimeError("unexpected")
        return {"key_id": key_id}

    return app


async def token_count(db: Db) -> int:
    return await db.count(select(func.count()).select_from(KisToken))


async def test_session_dependency_commits_before_the_response(db: Db) -> None:
    transport = httpx.ASGITransport(app=token_app(db.sessionmaker))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/tokens/abc")

        assert response.status_code == 200
        assert await token_count(db) == 1


@pytest.mark.parametrize(("fail", "status"), [("conflict", 409), ("bug", 500), ("at-commit", 500)])
async def test_session_dependency_rolls_back_and_reports_failures(db: Db, fail: str, status: int) -> None:
    transport = httpx.ASGITransport(app=token_app(db.sessionmaker), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/tokens/abc", params={"fail": fail})

    assert response.status_code == status
    assert await token_count(db) == 0
