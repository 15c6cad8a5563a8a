"""Versioned message contracts shared by every service.

The version lives in the ``kind`` discriminator (``market.tick.v1``). Additive optional fields
may join a ``V1``; anything else is a new ``V2`` class published alongside until every consumer
reads it. Payloads are strict (unknown fields are errors); the envelope is lenient so new
headers never break old readers. Prices are integer KRW; times are aware and stored as UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from common.clock import ensure_utc

# A KRX short code: 6 characters (ETNs carry a leading Q).
Symbol = Annotated[str, StringConstraints(pattern=r"^Q?[0-9A-Z]{6}$")]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(ensure_utc)]
# Amounts, prices and counts are stored as BIGINT: a larger value can only come from a broken
# producer, and refusing it here dead-letters the message at once with a clear reason instead
# of failing its handler on every retry.
MAX_BIGINT = 2**63 - 1
Krw = Annotated[int, Field(ge=0, le=MAX_BIGINT, description="an amount or price in whole KRW")]
PositiveKrw = Annotated[int, Field(gt=0, le=MAX_BIGINT, description="a price in whole KRW")]
Shares = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
Timeframe = Literal["1m", "1d"]
Side = Literal["buy", "sell"]


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tick(Contract):
    """One trade print. ``seq`` orders prints within the same instant and makes them unique."""

    symbol: Symbol
    ts: UtcDatetime
    seq: int = Field(ge=0, le=MAX_BIGINT)
    price: PositiveKrw
    volume: Shares
    cum_volume: Shares | None = None
    side: Side | None = None


class Bar(Contract):
    """An OHLCV bar; ``ts`` is the bar's opening instant."""

    symbol: Symbol
    timeframe: Timeframe
    ts: UtcDatetime
    open: Krw
    high: Krw
    low: Krw
    close: Krw
    volume: Shares
    value: Krw | None = Field(default=None, description="traded value in KRW")


class MarketTickV1(Tick):
    kind: Literal["market.tick.v1"] = "market.tick.v1"


class MarketTickBatchV1(Contract):
    kind: Literal["market.tick_batch.v1"] = "market.tick_batch.v1"
    ticks: list[Tick] = Field(min_length=1, max_length=50_000)


class MarketBarV1(Contract):
    kind: Literal["market.bar.v1"] = "market.bar.v1"
    bars: list[Bar] = Field(min_length=1, max_length=50_000)
    source: str = Field(default="kis", max_length=64)


class FeaturesV1(Contract):
    """Features of one closed bar, computed only from data up to that bar's close."""

    kind: Literal["features.v1"] = "features.v1"
    symbol: Symbol
    timeframe: Timeframe
    ts: UtcDatetime
    close: PositiveKrw
    values: dict[str, float | None]
    feature_set: str = Field(max_length=64)


class MarketQuoteV1(Contract):
    """A quote fetched from the broker, with the fundamentals it carried (None where it had none).

    ``ts`` is when the quote was fetched: a consumer may use its fundamentals for bars closing at
    or after ``ts``, never before. ``market_cap`` is in whole KRW.
    """

    kind: Literal["market.quote.v1"] = "market.quote.v1"
    symbol: Symbol
    ts: UtcDatetime
    price: PositiveKrw
    per: Decimal | None = None
    pbr: Decimal | None = None
    eps: Decimal | None = None
    bps: Decimal | None = None
    market_cap: Krw | None = None
    foreign_ownership_pct: Decimal | None = Field(default=None, ge=0, le=100)
    listed_shares: Shares | None = None


class ModelPromotedV1(Contract):
    kind: Literal["model.promoted.v1"] = "model.promoted.v1"
    model_id: uuid.UUID
    version: str = Field(max_length=64)
    artifact_uri: str = Field(max_length=2048)
    promoted_at: UtcDatetime


class OrderEventBase(Contract):
    order_id: uuid.UUID
    idempotency_key: str = Field(max_length=128)
    symbol: Symbol
    side: Side
    quantity: int = Field(gt=0, le=MAX_BIGINT)
    price: Krw | None = Field(default=None, description="limit price; None for a market order")


class OrderSubmittedV1(OrderEventBase):
    kind: Literal["order.submitted.v1"] = "order.submitted.v1"


class OrderAcceptedV1(OrderEventBase):
    kind: Literal["order.accepted.v1"] = "order.accepted.v1"
    broker_order_no: str = Field(max_length=32)


class OrderRejectedV1(OrderEventBase):
    kind: Literal["order.rejected.v1"] = "order.rejected.v1"
    reason: str = Field(max_length=1000)


class OrderCancelledV1(OrderEventBase):
    kind: Literal["order.cancelled.v1"] = "order.cancelled.v1"
    cancelled_quantity: int = Field(ge=0, le=MAX_BIGINT)


class FillV1(Contract):
    kind: Literal["fill.executed.v1"] = "fill.executed.v1"
    fill_id: str = Field(max_length=128)
    order_id: uuid.UUID
    symbol: Symbol
    side: Side
    quantity: int = Field(gt=0, le=MAX_BIGINT)
    price: PositiveKrw
    commission: Krw
    tax: Krw
    filled_at: UtcDatetime

    @property
    def gross(self) -> Decimal:
        return Decimal(self.quantity) * Decimal(self.price)


Payload = Annotated[
    MarketTickV1
    | MarketTickBatchV1
    | MarketBarV1
    | MarketQuoteV1
    | FeaturesV1
    | ModelPromotedV1
    | OrderSubmittedV1
    | OrderAcceptedV1
    | OrderRejectedV1
    | OrderCancelledV1
    | FillV1,
    Field(discriminator="kind"),
]


class EnvelopeHeader(BaseModel):
    """An envelope's identity and lineage without its payload.

    A consumer that reads a payload its own way (the data-processor's columnar tick batches)
    validates the rest of the envelope with this: the same fields, the same rules.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    message_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="the idempotency key")
    occurred_at: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str = Field(min_length=1, max_length=64)
    correlation_id: str | None = Field(default=None, max_length=128)


class Envelope(EnvelopeHeader):
    """What travels on the bus: the payload plus its identity and lineage."""

    payload: Payload

    @property
    def kind(self) -> str:
        return self.payload.kind
