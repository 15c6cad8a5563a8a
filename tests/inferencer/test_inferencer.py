"""Model loading and hot swap, recurrent state per symbol, decisions, and /inference/predict."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from common.clock import KST
from common.contracts import ModelPromotedV1

from .conftest import ACTIONS, FEATURES, InferencerHarness, envelope, features, make_model

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
SYMBOL = "005930"


async def test_features_become_stored_decisions_once_the_window_is_full(inferencer: InferencerHarness) -> None:
    service = inferencer.service
    assert await service.on_features(features(SYMBOL, T0)) is None  # window 2: warming up
    first = await service.on_features(features(SYMBOL, T0 + timedelta(minutes=1)))
    second = await service.on_features(features(SYMBOL, T0 + timedelta(minutes=2)))
    assert first is not None and second is not None
    assert first.prediction.target_exposure == ACTIONS[2] and first.model_version == "v1"
    assert (first.prediction.value, second.prediction.value) == (0.0, 1.0)  # the state carries over
    assert first.feature_ts == T0 + timedelta(minutes=1)

    # A redelivered (or older) bar changes nothing.
    assert await service.on_features(features(SYMBOL, T0 + timedelta(minutes=2))) is None
    stored = (await inferencer.http.get("/inference/decisions", params={"symbol": SYMBOL})).json()
    assert [d["id"] for d in stored] == [str(second.id), str(first.id)]
    assert stored[0]["model_version"] == "v1" and stored[0]["target_exposure"] == ACTIONS[2]


async def test_symbols_keep_separate_recurrent_state(inferencer: InferencerHarness) -> None:
    service = inferencer.service
    for minute in range(4):
        await service.on_features(features(SYMBOL, T0 + timedelta(minutes=minute)))
    await service.on_features(features("000660", T0))
    other = await service.on_features(features("000660", T0 + timedelta(minutes=1)))
    assert other is not None and other.prediction.value == 0.0


async def test_intraday_state_resets_at_the_day_boundary(inferencer: InferencerHarness) -> None:
    service = inferencer.service
    for minute in range(3):
        last = await service.on_features(features(SYMBOL, T0 + timedelta(minutes=minute)))
    assert last is not None and last.prediction.value == 1.0
    next_day = await service.on_features(features(SYMBOL, T0 + timedelta(days=1, hours=-1)))
    assert next_day is not None and next_day.prediction.value == 0.0


async def test_a_promoted_model_is_swapped_in_without_mixing_requests_in_flight(
    inferencer: InferencerHarness, tmp_path: Path
) -> None:
    service = inferencer.service
    slow_v1 = make_model(tmp_path / "slow", "v1-slow", favoured=1, slow=3000)
    await service.load(slow_v1)
    await service.on_features(features(SYMBOL, T0))
    await service.on_features(features(SYMBOL, T0 + timedelta(minutes=1)))

    in_flight = asyncio.create_task(service.on_features(features(SYMBOL, T0 + timedelta(minutes=2))))
    await asyncio.sleep(0.01)
    v2 = make_model(tmp_path, "v2", favoured=3)
    promoted = ModelPromotedV1(model_id=uuid.uuid4(), version="v2", artifact_uri=v2, promoted_at=T0)
    await inferencer.runtime.bus.publish("model.promoted", envelope(promoted))

    old = await in_flight
    assert old is not None and old.model_version == "v1-slow" and old.prediction.target_exposure == ACTIONS[1]
    assert old.prediction.value == 1.0

    async def swapped() -> bool:
        model = service.engine.model
        return model is not None and model.version == "v2"

    for _ in range(200):
        if await swapped():
            break
        await asyncio.sleep(0.02)
    new = await service.on_features(features(SYMBOL, T0 + timedelta(minutes=3)))
    assert new is not None and new.model_version == "v2" and new.prediction.target_exposure == ACTIONS[3]
    # The new model's state is rebuilt over the day's bars (10:01..10:03), not carried from v1's.
    assert new.prediction.value == 2.0 and new.steps == 3
    assert (await inferencer.http.get("/inference/model")).json()["model"]["version"] == "v2"


async def test_the_registry_is_polled_for_the_promoted_model(inferencer: InferencerHarness, tmp_path: Path) -> None:
    uri = make_model(tmp_path, "v7", favoured=0)
    # The model-trainer's registry table (migration 0004), filled as the trainer would.
    columns = (
        "id, version, status, created_at, promoted_at, data_hash, symbols, ranges, feature_set, feature_names, "
        "timeframe, seed, config, code_version, metrics, artifact_uri"
    )
    row = (
        "(:id, :version, :status, '2024-03-04 00:00:00', :promoted, 'h', '[]', '{}', 'core-v1', '[]', '1m', 1, "
        "'{}', 'test', '{}', :uri)"
    )
    async with inferencer.runtime.engine.begin() as conn:
        for version, status, promoted, target in (
            ("v6", "retired", None, "x"),
            ("v7", "promoted", "2024-03-04 01:00:00", uri),
        ):
            await conn.execute(
                text(f"INSERT INTO models ({columns}) VALUES {row}"),
                {"id": uuid.uuid4().hex, "version": version, "status": status, "promoted": promoted, "uri": target},
            )
    model = await inferencer.service.refresh_from_registry()
    assert model is not None and model.version == "v7"


async def test_predict_on_given_or_latest_features_without_trading(inferencer: InferencerHarness) -> None:
    http = inferencer.http
    rows = [{name: 0.1 for name in FEATURES}] * 2
    given = await http.post("/inference/predict", json={"symbol": SYMBOL, "features": rows, "position": 0.5})
    assert given.status_code == 200, given.text
    assert given.json()["target_exposure"] == ACTIONS[2] and given.json()["source"] == "given"
    assert abs(sum(given.json()["probabilities"]) - 1.0) < 1e-5

    too_few = await http.post("/inference/predict", json={"symbol": SYMBOL})
    assert too_few.status_code == 409 and "needs 2 rows" in too_few.json()["message"]
    for minute in range(2):
        await inferencer.service.on_features(features(SYMBOL, T0 + timedelta(minutes=minute)))
    latest = await http.post("/inference/predict", json={"symbol": SYMBOL})
    assert latest.status_code == 200 and latest.json()["source"] == "latest"
    assert latest.json()["value"] == 1.0  # the symbol's live state, left untouched
    again = await http.post("/inference/predict", json={"symbol": SYMBOL})
    assert again.json()["value"] == 1.0
    assert (await http.post("/inference/predict", json={"symbol": "bad"})).status_code == 422
    bad_position = {"symbol": SYMBOL, "features": rows, "position": 2}
    assert (await http.post("/inference/predict", json=bad_position)).status_code == 422


async def test_features_on_the_bus_reach_the_model(inferencer: InferencerHarness) -> None:
    for minute in range(3):
        bar = features(SYMBOL, T0 + timedelta(minutes=minute))
        await inferencer.runtime.bus.publish(f"features.1m.{SYMBOL}", envelope(bar))
    for _ in range(100):
        if inferencer.service.decisions_made == 2:
            break
        await asyncio.sleep(0.02)
    assert inferencer.service.decisions_made == 2


async def test_only_the_served_models_feature_set_reaches_it(inferencer: InferencerHarness) -> None:
    # The data-processor publishes ta.v1 and mt-ohlcv-v1 for every bar; the model here serves core-v1.
    service = inferencer.service
    for minute in range(3):
        other = features(SYMBOL, T0 + timedelta(minutes=minute)).model_copy(update={"feature_set": "ta.v1"})
        assert await service.on_features(other) is None
    assert await service.on_features(features(SYMBOL, T0)) is None  # its own window starts empty: warming up
    decision = await service.on_features(features(SYMBOL, T0 + timedelta(minutes=1)))
    assert decision is not None and decision.feature_set == "core-v1"
    assert service.decisions_made == 1
