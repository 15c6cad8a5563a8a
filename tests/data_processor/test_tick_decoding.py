"""The tick queue's decoder reads tick batches as columns, exactly as the contract would.

``decode_tick_message`` skips the per-tick models for the form producers write, and hands
anything else to ``Envelope`` validation. Whatever the body, the result must be what the
contract path gives: the same columns, or the same ``ValidationError``.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from common.contracts import Envelope, MarketBarV1, MarketTickBatchV1, Tick
from data_processor import repository
from data_processor.ticks import TickBatch, TickColumns, _fast_tick_batch, decode_tick_message

COLUMN_FIELDS = ("symbols", "symbol", "ts", "seq", "price", "volume", "cum_volume", "has_cum_volume", "side")


def random_ticks(rng: random.Random, count: int, start: datetime) -> list[Tick]:
    ticks = []
    for i in range(count):
        micros = rng.choice((0, 0, 250_000, rng.randrange(10**6)))
        ticks.append(
            Tick(
                symbol=rng.choice(("005930", "000660", "Q500001")),
                ts=start + timedelta(seconds=rng.randrange(0, 86_400), microseconds=micros),
                seq=rng.choice((0, i, 2**63 - 1)),
                price=rng.choice((1, 70_000, 2**63 - 1)),
                volume=rng.choice((0, 1, 10**12)),
                cum_volume=rng.choice((None, 0, 5_000)),
                side=rng.choice((None, "buy", "sell")),
            )
        )
    return ticks


def body_of(payload: dict[str, Any], **envelope: Any) -> bytes:
    document = {"message_id": str(uuid.uuid4()), "producer": "test", "payload": payload, **envelope}
    return json.dumps(document).encode()


def reference(body: bytes) -> TickBatch:
    """What the contract path gives: ``Envelope`` validation, then columns of the models."""
    return TickBatch.of(Envelope.model_validate_json(body))


def assert_same(decoded: TickBatch, expected: TickBatch) -> None:
    assert (decoded.message_id, decoded.correlation_id, decoded.kind) == (
        expected.message_id,
        expected.correlation_id,
        expected.kind,
    )
    if expected.columns is None:
        assert decoded.columns is None
        return
    assert decoded.columns is not None
    for name in COLUMN_FIELDS:
        mine, theirs = getattr(decoded.columns, name), getattr(expected.columns, name)
        if isinstance(theirs, np.ndarray):
            assert mine.dtype == theirs.dtype, name
            np.testing.assert_array_equal(mine, theirs, err_msg=name)
        else:
            assert mine == theirs, name


@pytest.mark.parametrize(
    "start",
    [
        datetime(2024, 1, 2, 0, 0, tzinfo=UTC),
        datetime(2024, 2, 28, 12, 0, tzinfo=UTC),  # over a leap day
        datetime(1987, 7, 1, 0, 0, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, tzinfo=UTC),
        datetime(9999, 12, 30, 0, 0, tzinfo=UTC),
    ],
)
def test_batches_as_producers_write_them_decode_to_the_contracts_columns(start: datetime) -> None:
    ticks = random_ticks(random.Random(start.year), 2_000, start)
    envelope = Envelope(producer="test", correlation_id="c-1", payload=MarketTickBatchV1(ticks=ticks))
    body = envelope.model_dump_json().encode()

    assert _fast_tick_batch(body) is not None  # the columnar path, not the fallback
    decoded = decode_tick_message(body)

    assert_same(decoded, reference(body))
    assert decoded.columns is not None
    everything = np.arange(len(ticks))
    assert decoded.columns.rows(everything) == [
        (t.symbol, t.ts, t.seq, t.price, t.volume, t.cum_volume, t.side) for t in ticks
    ]
    assert [decoded.columns.tick(i) for i in range(len(ticks))] == ticks


TICK = {"symbol": "005930", "ts": "2024-01-02T00:00:00Z", "seq": 0, "price": 70_000, "volume": 10}
FULL_TICK = {**TICK, "cum_volume": None, "side": None}


@pytest.mark.parametrize(
    "changes",
    [
        {},  # optional fields left out
        {"ts": "2024-01-02T09:00:00+09:00"},  # another offset
        {"ts": "2024-01-02T00:00:00.5Z"},
        {"ts": "2024-01-02t00:00:00z"},
        {"ts": 1704153600},  # a Unix time
        {"seq": "5"},  # lax numbers
        {"price": 70_000.0},
        {"volume": True},
        {"cum_volume": "7"},
    ],
)
def test_other_forms_the_contract_accepts_decode_through_it(changes: dict[str, Any]) -> None:
    tick = {**(TICK if not changes else FULL_TICK), **changes}
    body = body_of({"kind": "market.tick_batch.v1", "ticks": [tick, {**FULL_TICK, "seq": 1}]})

    assert _fast_tick_batch(body) is None
    assert_same(decode_tick_message(body), reference(body))


@pytest.mark.parametrize(
    "changes",
    [
        {"symbol": "005930\n"},
        {"symbol": "5930"},
        {"symbol": 5930},
        {"ts": "2024-02-30T00:00:00Z"},
        {"ts": "2023-02-29T00:00:00Z"},
        {"ts": "2024-01-02T24:00:00Z"},
        {"ts": "2024-01-02T00:00:60Z"},
        {"ts": "2024-01-02T00:00:00"},  # naive
        {"ts": "0000-01-01T00:00:00Z"},
        {"ts": "2024-01-02T00:00:00.12345xZ"},
        {"ts": "２０２４-01-02T00:00:00Z"},
        {"seq": -1},
        {"seq": 2**63},
        {"price": 0},
        {"volume": -1},
        {"cum_volume": -1},
        {"side": "hold"},
        {"side": ["buy"]},
        {"unknown": 1},
    ],
)
def test_ticks_the_contract_refuses_are_refused_with_its_error(changes: dict[str, Any]) -> None:
    body = body_of({"kind": "market.tick_batch.v1", "ticks": [{**FULL_TICK, "seq": 1}, {**FULL_TICK, **changes}]})

    with pytest.raises(ValidationError) as expected:
        Envelope.model_validate_json(body)
    with pytest.raises(ValidationError) as decoded:
        decode_tick_message(body)

    assert decoded.value.errors() == expected.value.errors()


@pytest.mark.parametrize(
    "body",
    [
        body_of({"kind": "market.tick_batch.v1", "ticks": [FULL_TICK]}, message_id="not-a-uuid"),
        body_of({"kind": "market.tick_batch.v1", "ticks": [FULL_TICK]}, occurred_at="2024-01-02T00:00:00"),
        body_of({"kind": "market.tick_batch.v1", "ticks": [FULL_TICK]}, producer=""),
        body_of({"kind": "market.tick_batch.v1", "ticks": [FULL_TICK]}, correlation_id=5),
        body_of({"kind": "market.tick_batch.v1", "ticks": []}),
        body_of({"kind": "market.tick_batch.v1", "ticks": [FULL_TICK] * 50_001}),
        body_of({"kind": "market.tick_batch.v1", "ticks": [FULL_TICK], "extra": 1}),
        body_of({"ticks": [FULL_TICK]}),
        b"not json",
        b'{"message_id": "',
    ],
)
def test_envelopes_the_contract_refuses_are_refused_with_its_error(body: bytes) -> None:
    with pytest.raises(ValidationError) as expected:
        Envelope.model_validate_json(body)
    with pytest.raises(ValidationError) as decoded:
        decode_tick_message(body)

    assert decoded.value.errors() == expected.value.errors()


def test_a_payload_of_another_kind_decodes_without_ticks() -> None:
    bar = {
        "symbol": "005930", "timeframe": "1m", "ts": "2024-01-02T00:00:00Z",
        "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1,
    }  # fmt: skip
    body = body_of({"kind": "market.bar.v1", "bars": [bar]})

    decoded = decode_tick_message(body)

    assert decoded.columns is None
    assert decoded.kind == MarketBarV1.model_fields["kind"].default


def test_omitted_envelope_fields_get_the_contracts_defaults() -> None:
    body = json.dumps({"producer": "p", "payload": {"kind": "market.tick_batch.v1", "ticks": [FULL_TICK]}}).encode()

    decoded = decode_tick_message(body)

    assert isinstance(decoded.message_id, uuid.UUID)
    assert decoded.correlation_id is None


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 2**63 - 1, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["005930", "Q00593", "buy", "sell", "2024-03-04T01:00:00Z", "9999-12-31T23:59:59.000001Z"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, derandomize=True, database=None, suppress_health_check=list(HealthCheck), deadline=None)
@given(
    position=st.integers(min_value=0, max_value=2),
    field=st.sampled_from([*FULL_TICK, "extra"]),
    value=JSON_VALUES,
    delete=st.booleans(),
)
def test_any_one_field_changed_decodes_as_the_contract_decides(
    position: int, field: str, value: Any, delete: bool
) -> None:
    ticks = [{**FULL_TICK, "seq": i} for i in range(3)]
    if delete:
        ticks[position].pop(field, None)
    else:
        ticks[position][field] = value
    body = body_of({"kind": "market.tick_batch.v1", "ticks": ticks})

    outcomes = []
    for decode in (reference, decode_tick_message):
        try:
            outcomes.append(decode(body))
        except ValidationError as refused:
            outcomes.append(refused.errors())
    expected, decoded = outcomes
    if isinstance(expected, TickBatch) and isinstance(decoded, TickBatch):
        assert_same(decoded, expected)
    else:
        assert decoded == expected


@pytest.mark.integration
async def test_the_binary_copy_stores_the_rows_that_records_would(pg_url: str) -> None:
    ticks = random_ticks(random.Random(5), 3_000, datetime(2024, 1, 2, tzinfo=UTC))
    ticks += random_ticks(random.Random(6), 50, datetime(1, 1, 1, tzinfo=UTC))
    ticks += random_ticks(random.Random(7), 50, datetime(9999, 12, 30, tzinfo=UTC))
    columns = TickColumns.of(ticks)
    positions = np.arange(len(ticks))[::-1]  # any order, as the service passes them
    names = list(repository.TICK_COLUMNS)
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute("CREATE TABLE ticks (symbol varchar(7), ts timestamptz, seq bigint, price bigint,"
                           " volume bigint, cum_volume bigint, side varchar(4))")  # fmt: skip
        await conn.execute("CREATE TABLE expected (LIKE ticks)")
        await conn.copy_records_to_table("expected", records=columns.rows(positions), columns=names)
        payload = memoryview(repository.tick_copy_payload(columns, positions))
        await conn.copy_to_table("ticks", source=payload, columns=names, format="binary")

        order = "ORDER BY symbol, ts, seq, price, volume, cum_volume, side"
        stored = await conn.fetch(f"SELECT * FROM ticks {order}")
        expected = await conn.fetch(f"SELECT * FROM expected {order}")
    finally:
        await conn.close()
    assert len(stored) == len(ticks)
    assert [tuple(r) for r in stored] == [tuple(r) for r in expected]
