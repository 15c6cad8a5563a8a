"""The one declarative ``Base`` every service maps its tables on, and the foundation tables.

Conventions: every datetime is ``UtcDateTime`` (aware in, aware UTC out, on SQLite too);
money and prices are ``BigInteger`` KRW, never floats; constraint names follow
``NAMING_CONVENTION`` so migrations can address them on every backend.

Tables change only through a migration in ``common/db/migrations/versions``; the time-series
tables' storage (partitions or hypertables) lives there, not here.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, CheckConstraint, DateTime, Dialect, Index, MetaData, String, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from common.clock import ensure_utc

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

KisDomain = Literal["real", "paper"]


class UtcDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that refuses naive datetimes and always returns aware UTC.

    SQLite keeps no offset, so values are normalised to UTC before storage (which also keeps
    its text ordering chronological) and tagged UTC when read back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return ensure_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base shared by every service's tables (one metadata, one migration history)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 — SQLAlchemy reads this class attribute as is
        datetime: UtcDateTime(),
        uuid.UUID: Uuid(),
    }


class ProcessedMessage(Base):
    """Inbox: one row per (consumer, message) already applied; see ``common.db.inbox``."""

    __tablename__ = "processed_messages"

    consumer: Mapped[str] = mapped_column(String(128), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(index=True)


class TickRecord(Base):
    """One trade print; ``seq`` orders prints within the same instant."""

    __tablename__ = "ticks"

    symbol: Mapped[str] = mapped_column(String(7), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    price: Mapped[int] = mapped_column(BigInteger)
    volume: Mapped[int] = mapped_column(BigInteger)
    cum_volume: Mapped[int | None] = mapped_column(BigInteger)
    side: Mapped[str | None] = mapped_column(String(4))


class BarRecord(Base):
    """An OHLCV bar in KRW; ``ts`` is the bar's opening instant."""

    __tablename__ = "bars"

    symbol: Mapped[str] = mapped_column(String(7), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(4), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    open: Mapped[int] = mapped_column(BigInteger)
    high: Mapped[int] = mapped_column(BigInteger)
    low: Mapped[int] = mapped_column(BigInteger)
    close: Mapped[int] = mapped_column(BigInteger)
    volume: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[int | None] = mapped_column(BigInteger)


class FeatureRecord(Base):
    """The features of one closed bar under one feature set."""

    __tablename__ = "features"

    symbol: Mapped[str] = mapped_column(String(7), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(4), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    feature_set: Mapped[str] = mapped_column(String(64), primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column(JsonDocument)


class KisToken(Base):
    """The KIS access token shared by every service and replica (one issuance a minute at most).

    ``key_id`` is ``kis_token_key(domain, appkey)``: the appkey itself is never stored.
    """

    __tablename__ = "kis_tokens"
    __table_args__ = (CheckConstraint("domain IN ('real', 'paper')", name="domain"),)

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain: Mapped[str] = mapped_column(String(8))
    access_token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]
    issued_at: Mapped[datetime]


# Latest-first per symbol is the dominant read ("last N bars of 005930").
Index("ix_ticks_symbol_ts", TickRecord.symbol, TickRecord.ts.desc())
Index("ix_bars_symbol_ts", BarRecord.symbol, BarRecord.ts.desc())
Index("ix_features_symbol_ts", FeatureRecord.symbol, FeatureRecord.ts.desc())


def kis_token_key(domain: KisDomain, appkey: str) -> str:
    """The ``kis_tokens.key_id`` of an appkey on a domain: sha256 hex, so the key stays secret."""
    return hashlib.sha256(f"{domain}:{appkey}".encode()).hexdigest()
