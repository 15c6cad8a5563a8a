"""Contracts round-trip through JSON, are strict in payloads and lenient in envelopes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from common.contracts import (
    Bar,
    Envelope,
    FeaturesV1,
    FillV1,
    MarketBarV1,
    MarketQuoteV1,
    MarketTickBatchV1,
    MarketTickV1,
    ModelPromotedV1,
    OrderAcceptedV1,
    OrderCancelledV1,
    OrderRejectedV1,
    OrderSubmittedV1,
    Tick,
)

KST = timezone(timedelta(hours=9))
T0 = datetime(2024, 1, 2, 9, 0, 1, tzinfo=KST)
ORDER = {"order_id": uuid.uuid4(), "idempotency_key": "decision-1", "symbol": "005930", "side": "buy", "quantity": 10}

EXAMPLES = [
    MarketTickV1(symbol="005930", ts=T0, seq=1, price=71900, volume=5, cum_volume=100, side="buy"),
    MarketTickBatchV1(ticks=[Tick(symbol="005930", ts=T0, seq=i, price=71900, volume=1) for i in range(3)]),
    MarketBarV1(bars=[Bar(symbol="000660", timeframe="1d", ts=T0, open=1, high=3, low=1, close=2, volume=9)]),
    MarketQuoteV1(
        symbol="005930",
        ts=T0,
        price=71900,
        per=Decimal("13.42"),
        pbr=Decimal("1.21"),
        eps=Decimal("5357"),
        bps=Decimal("59393"),
        market_cap=429_226_000_000_000,
        foreign_ownership_pct=Decimal("55.21"),
        listed_shares=5_969_782_550,
    ),
    MarketQuoteV1(symbol="000660", ts=T0, price=130_000),  # fundamentals are optional
    FeaturesV1(
        symbol="005930", timeframe="1m", ts=T0, close=71900, values={"rsi_14": 55.5, "sma_5": None}, feature_set="v1"
    ),
    ModelPromotedV1(model_id=uuid.uuid4(), version="2024.01.02-1", artifact_uri="file:///models/a.pt", promoted_at=T0),
    OrderSubmittedV1(**ORDER, price=71900),
    OrderAcceptedV1(**ORDER, broker_order_no="0000012345"),
    OrderRejectedV1(**ORDER, reason="insufficient cash"),
    OrderCancelledV1(**ORDER, cancelled_quantity=4),
    FillV1(
        fill_id="f-1",
        order_id=uuid.uuid4(),
        symbol="005930",
        side="sell",
        quantity=3,
        price=72000,
        commission=32,
        tax=432,
        filled_at=T0,
    ),
]


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: p.kind)
def test_every_contract_round_trips_through_json(payload: object) -> None:
    envelope = Envelope(producer="test", correlation_id="c-1", payload=payload)  # type: ignore[arg-type]
    restored = Envelope.model_validate_json(envelope.model_dump_json())
    assert restored == envelope
    assert type(restored.payload) is type(payload)


def test_times_are_stored_as_utc() -> None:
    tick = Tick(symbol="005930", ts=T0, seq=0, price=1, volume=0)
    assert tick.ts == datetime(2024, 1, 2, 0, 0, 1, tzinfo=UTC)
    assert tick.ts.utcoffset() == timedelta(0)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError):
        Tick(symbol="005930", ts=datetime(2024, 1, 2, 9, 0), seq=0, price=1, volume=0)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValidationError):
        Envelope.model_validate({"producer": "x", "payload": {"kind": "market.tick.v2"}})


def test_payload_is_strict_and_envelope_lenient() -> None:
    body = Envelope(producer="x", payload=EXAMPLES[0]).model_dump(mode="json")
    body["future_header"] = "ignored"
    assert Envelope.model_validate(body).producer == "x"
    body["payload"]["unexpected"] = 1
    with pytest.raises(ValidationError):
        Envelope.model_validate(body)


@pytest.mark.parametrize("bad", [{"price": 0}, {"price": 71900.5}, {"symbol": "5930"}, {"volume": -1}])
def test_prices_are_positive_whole_won_and_symbols_krx_codes(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"symbol": "005930", "ts": T0, "seq": 0, "price": 71900, "volume": 1} | bad
    with pytest.raises(ValidationError):
        Tick.model_validate(fields)
