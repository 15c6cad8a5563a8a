"""Distributed mode end to end: the simulator and every service as separate OS processes.

One flow over RabbitMQ, PostgreSQL and HTTP (loopback only): collect daily bars from the KIS
simulator → process them into bars and features → train a tiny model → promote it → the
inferencer turns new features into decisions → the trader places orders → the simulator fills
them. Then the bus-dependent services restart one at a time while data flows, the active
trader is killed and its standby takes over, and the database is checked at every step.
``common.cluster`` (``scripts/run_cluster.sh``) starts and stops the processes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from common.cluster import Cluster, ClusterConfig
from tests.e2e.support import eventually

pytestmark = pytest.mark.integration

SYMBOLS = ["015760", "030200"]
# The simulator's market opens at this instant (08:50 KST; 1 s = 1 min at speed 60), so the
# whole test runs inside one simulated session.
SIM_START = "2018-01-10T08:50:00+09:00"
HISTORY = ("2015-01-01", "2017-12-22")  # the first backfill: what the model trains on
NEW_DAYS = ("2017-12-26", "2017-12-29")  # after promotion: new bars to decide on
RESTART_DAYS = ("2018-01-02", "2018-01-05")  # flowing while the data-processor restarts
OLDER_HISTORY = ("2013-01-01", "2014-12-31")  # flowing while an inferencer restarts
LAST_DAYS = ("2018-01-08", "2018-01-08")  # decided after the trader restarted
FAILOVER_DAYS = ("2018-01-09", "2018-01-09")  # decided after the standby trader took over
TRAINING = {
    "source": {"kind": "db", "symbols": SYMBOLS, "timeframe": "1d"},
    "split": {
        "train_start": "2015-01-01",
        "train_end": "2016-06-30",
        "val_start": "2016-07-01",
        "val_end": "2017-03-31",
        "test_start": "2017-04-01",
        "test_end": "2017-12-22",
    },
    # Inferencers read windows from the stored features: a restarted or second replica decides
    # the next bar with a full window at once.
    "window": 5,
    "forecaster": {"epochs": 1, "max_samples": 300, "hidden": 8},
    "a3c": {
        "workers": 1,
        "envs_per_worker": 2,
        "n_steps": 10,
        "total_steps": 300,
        "eval_every_steps": 300,
        "hidden_size": 16,
        "episode_length": 64,
    },
    "seeds": [0],
    "auto_promote": False,
}


class Database:
    """Plain SQL against the cluster's database (what the services wrote)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async def run() -> list[tuple[Any, ...]]:
            engine = create_async_engine(self.url)
            try:
                async with engine.connect() as conn:
                    return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def value(self, sql: str, **params: Any) -> Any:
        return self.rows(sql, **params)[0][0]


class Api:
    """The gateway's /api/v1 with an admin's bearer token."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=f"{base}/api/v1", timeout=30)
        token = self.http.post("/auth/token", data={"username": username, "password": password})
        assert token.status_code == 200, token.text
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def post(self, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201, 202)) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code in expect, f"POST {path}: {response.status_code} {response.text[:500]}"
        return response.json()


def backfill(api: Api, start: str, end: str) -> dict[str, Any]:
    job = api.post("/data/collect", {"kind": "backfill", "symbols": SYMBOLS, "start": start, "end": end})

    def finished() -> dict[str, Any] | None:
        current: dict[str, Any] = api.get(f"/data/collect/{job['id']}")
        assert current["status"] not in ("failed", "cancelled"), current
        return current if current["status"] == "completed" else None

    return eventually(finished, 90, f"backfill {start}..{end}")


def trading_days(data: Path, start: str, end: str) -> int:
    """Days in [start, end] that the replayed files have for every symbol (the KRX trading days)."""
    per_symbol = []
    for symbol in SYMBOLS:
        lines = (data / f"{symbol}.csv").read_text().splitlines()[1:]
        per_symbol.append({line.split(",", 1)[0] for line in lines if start <= line.split(",", 1)[0] <= end})
    assert all(days == per_symbol[0] for days in per_symbol)
    return len(per_symbol[0])


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A service's /metrics as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


@pytest.fixture
def cluster(pg_url: str, amqp_url: str, shared_data: Path, tmp_path: Path) -> Any:
    config = ClusterConfig(
        database_url=pg_url,
        amqp_url=amqp_url,
        work_dir=tmp_path / "cluster",
        exchange=f"test-e2e-{uuid.uuid4().hex[:8]}",
        free_ports=True,
        sim_data_dir=shared_data,
        sim_speed=60.0,
        sim_start=SIM_START,
        sim_rest_per_second=10.0,
        inferencers=2,
        gateways=2,
        traders=2,
        stop_timeout=15.0,
        env={
            "TRADEBOT_BUS_RETRY_DELAY_SECONDS": "0.5",
            "TRADEBOT_SHUTDOWN_DRAIN_TIMEOUT_SECONDS": "5",
            "DATA_PROCESSOR_FEATURE_SETS": '["ta.v1", "mt-ohlcv-v1"]',
            "INFERENCER_REGISTRY_POLL_SECONDS": "2",
            "TRADER_LEASE_TTL_SECONDS": "3",
            "TRADER_DECISION_ORDER_TYPE": "market",
            # One account of 100 M KRW: let a decision's order be as large as the account.
            "TRADER_RISK__MAX_ORDER_KRW": "100000000",
            "TRADER_RISK__MAX_POSITION_KRW": "100000000",
            "TRADER_RISK__MAX_GROSS_EXPOSURE_KRW": "100000000",
            "TRADER_RECONCILE_INTERVAL_SECONDS": "5",
        },
    )
    c = Cluster(config)
    c.migrate()
    assert c.upstreams["trader"] == [c.url("trader"), c.url("trader-2")]
    names = [n for n in c.members if n != "trader-2"]  # the standby joins later
    try:
        c.start(names, ready_timeout=120)
        yield c
    finally:
        codes = c.stop()
        assert all(m.process is None for m in c.members.values())
        print("exit codes:", codes)


def check_database(db: Database, bars: int) -> None:
    """Everything the services wrote agrees: each bar once with both feature sets, one order per
    decision, fills adding up to the orders and the positions."""
    assert db.value("SELECT count(*) FROM bars WHERE timeframe = '1d'") == bars
    for feature_set in ("ta.v1", "mt-ohlcv-v1"):
        stored = db.value("SELECT count(*) FROM features WHERE timeframe = '1d' AND feature_set = :s", s=feature_set)
        assert stored == bars, f"{feature_set}: {stored} feature rows for {bars} bars"
    assert db.value("SELECT count(*) FROM decisions WHERE feature_set <> 'mt-ohlcv-v1'") == 0
    failed = db.rows(
        "SELECT id, trade_status, error FROM decisions WHERE trade_status IS NULL OR trade_status = 'error'"
    )
    assert failed == [], f"decisions that reached no trader: {failed}"
    assert db.value("SELECT count(*) - count(DISTINCT idempotency_key) FROM orders") == 0
    orphans = db.rows(
        "SELECT d.id FROM decisions d LEFT JOIN orders o ON o.idempotency_key = CAST(d.id AS TEXT) "
        "WHERE d.order_id IS NOT NULL AND (o.id IS NULL OR o.id <> d.order_id)"
    )
    assert orphans == [], f"decisions whose order is not theirs: {orphans}"
    mismatched = db.rows(
        "SELECT o.id, o.filled_quantity, coalesce(sum(f.quantity), 0) FROM orders o "
        "LEFT JOIN fills f ON f.order_id = o.id GROUP BY o.id, o.filled_quantity "
        "HAVING o.filled_quantity <> coalesce(sum(f.quantity), 0)"
    )
    assert mismatched == [], f"orders whose fills do not add up: {mismatched}"
    positions = db.rows(
        "SELECT p.symbol, p.quantity, coalesce(sum(CASE WHEN f.side = 'buy' THEN f.quantity ELSE -f.quantity END), 0) "
        "FROM positions p LEFT JOIN fills f ON f.symbol = p.symbol GROUP BY p.symbol, p.quantity"
    )
    assert all(held == bought for _, held, bought in positions), positions


def settled(db: Database) -> bool:
    """No order is still open at the broker."""
    return bool(db.value("SELECT count(*) FROM orders WHERE status IN ('NEW', 'SUBMITTED', 'PARTIALLY_FILLED')") == 0)


def decided(db: Database, since: str) -> bool:
    """Every decision on bars from ``since`` has the trader's answer (none waits in the outbox)."""
    return bool(
        db.value(
            "SELECT count(*) FROM decisions WHERE feature_ts >= :d", d=datetime.fromisoformat(since + "T00:00+00:00")
        )
        and db.value("SELECT count(*) FROM decisions WHERE trade_status IN ('pending', 'error')") == 0
    )


def test_distributed_flow_restarts_and_failover(cluster: Cluster, pg_url: str, shared_data: Path) -> None:
    db = Database(pg_url)
    config = cluster.config
    started = time.monotonic()
    api = Api(cluster.gateway_url, config.admin_username, config.admin_password)
    health = api.get("/system/health")
    assert health["status"] == "ready", health
    bars = 0

    # 1. Collect history through the gateway: bars stored once, features of both sets.
    job = backfill(api, *HISTORY)
    bars += trading_days(shared_data, *HISTORY) * len(SYMBOLS)
    assert job["progress"]["bars_published"] >= bars
    eventually(
        lambda: db.value("SELECT count(*) FROM features WHERE feature_set = 'mt-ohlcv-v1'") >= bars,
        60,
        "history bars and features stored",
    )
    check_database(db, bars)

    # 2. Train a tiny model on the stored bars, promote it; both inferencer replicas load it.
    accepted = api.post("/model/train", TRAINING)
    status = eventually(
        lambda: (s := api.get(f"/model/status/{accepted['job_id']}"))["status"] in ("succeeded", "failed") and s,
        150,
        "training",
        interval=1.0,
    )
    assert status["status"] == "succeeded", status
    model_id = status["model_ids"][0]
    api.post(f"/model/models/{model_id}/promote")
    assert db.value("SELECT status FROM models WHERE id = :id", id=uuid.UUID(model_id)) == "promoted"
    for replica in ("inferencer", "inferencer-2"):
        eventually(
            lambda r=replica: httpx.get(f"{cluster.url(r)}/inference/model").json()["loaded"],
            30,
            f"{replica} serving the promoted model",
        )

    # 3. New bars after promotion: decisions, market orders, fills from the simulator.
    backfill(api, *NEW_DAYS)
    bars += trading_days(shared_data, *NEW_DAYS) * len(SYMBOLS)
    eventually(lambda: decided(db, NEW_DAYS[0]), 60, "decisions on the new bars")
    eventually(lambda: db.value("SELECT count(*) FROM fills") > 0, 60, "a fill from the simulator")
    eventually(lambda: settled(db), 60, "every order settled")
    check_database(db, bars)
    reconciliation = api.post("/trade/reconcile")
    assert reconciliation["differences"] == [], reconciliation
    assert reconciliation["broker_cash"] == reconciliation["ledger_cash"]

    # 4. Metrics moved where the traffic went; nothing was dead-lettered anywhere.
    processor = scrape(cluster.url("data-processor"))
    assert total(processor, "tradebot_bus_messages_consumed_total", outcome="ok") > 0
    assert total(processor, "tradebot_bus_messages_published_total", kind="features.v1") > 0
    assert total(processor, "tradebot_db_write_seconds_count", operation="inbox:market.bar.v1") > 0
    collector = scrape(cluster.url("data-collector"))
    assert total(collector, "tradebot_kis_requests_total", outcome="ok") > 0
    assert total(collector, "tradebot_bus_messages_published_total", kind="market.bar.v1") > 0
    trader = scrape(cluster.url("trader"))
    assert total(trader, "tradebot_orders_total", state="new") > 0
    assert total(trader, "tradebot_orders_total", state="filled") > 0
    assert total(trader, "tradebot_db_write_seconds_count", operation="trader") > 0
    assert total(scrape(cluster.url("model-trainer")), "tradebot_training_steps_total") > 0
    inferencers = [scrape(cluster.url(r)) for r in ("inferencer", "inferencer-2")]
    assert sum(total(m, "tradebot_decision_seconds_count") for m in inferencers) > 0
    for name in cluster.members:
        if name not in ("kis-sim", "trader-2"):
            assert total(scrape(cluster.url(name)), "tradebot_bus_messages_dead_lettered_total") == 0, name

    # 5. Two gateways and two inferencers side by side: one login works on both gateways, and
    # the gateways spread requests over both inferencers.
    other = httpx.Client(base_url=f"{cluster.url('api-gateway-2')}/api/v1", headers=dict(api.http.headers))
    assert other.get("/inference/model").status_code == 200
    for _ in range(6):
        assert api.http.get("/inference/model").status_code == 200
    for replica, metrics in zip(
        ("inferencer", "inferencer-2"), [scrape(cluster.url(r)) for r in ("inferencer", "inferencer-2")], strict=True
    ):
        assert total(metrics, "tradebot_http_requests_total", route="/inference/model") > 0, replica

    # 6. Restarts one at a time while data flows: nothing lost, nothing twice.
    first = api.post(
        "/data/collect", {"kind": "backfill", "symbols": SYMBOLS, "start": RESTART_DAYS[0], "end": RESTART_DAYS[1]}
    )
    assert cluster.restart_member("data-processor") == 0
    eventually(lambda: api.get(f"/data/collect/{first['id']}")["status"] == "completed", 90, "backfill during restart")
    bars += trading_days(shared_data, *RESTART_DAYS) * len(SYMBOLS)
    eventually(
        lambda: db.value("SELECT count(*) FROM features WHERE feature_set = 'mt-ohlcv-v1'") >= bars,
        60,
        "features after the processor restart",
    )
    eventually(lambda: decided(db, RESTART_DAYS[0]), 60, "decisions after the processor restart")

    older = api.post(
        "/data/collect", {"kind": "backfill", "symbols": SYMBOLS, "start": OLDER_HISTORY[0], "end": OLDER_HISTORY[1]}
    )
    assert cluster.restart_member("inferencer") == 0
    eventually(lambda: api.get(f"/data/collect/{older['id']}")["status"] == "completed", 90, "backfill during restart")
    bars += trading_days(shared_data, *OLDER_HISTORY) * len(SYMBOLS)
    eventually(
        lambda: db.value("SELECT count(*) FROM features WHERE feature_set = 'mt-ohlcv-v1'") >= bars,
        60,
        "features of the older history",
    )
    eventually(lambda: settled(db), 60, "orders settled before the trader restarts")

    assert cluster.restart_member("trader") == 0
    backfill(api, *LAST_DAYS)
    bars += trading_days(shared_data, *LAST_DAYS) * len(SYMBOLS)
    eventually(lambda: decided(db, LAST_DAYS[0]), 60, "decisions after the trader restart")
    eventually(lambda: settled(db), 60, "orders settled after the restarts")
    check_database(db, bars)

    # 7. A standby trader stays passive while the active one holds the lease, and takes over
    # when it is killed; an order already placed is not placed again.
    cluster.start_member("trader-2")
    cluster.wait_ready(["trader-2"], timeout=60)
    assert httpx.get(f"{cluster.url('trader-2')}/trade/instance").json()["active"] is False
    assert httpx.get(f"{cluster.url('trader-2')}/readyz").status_code == 503
    decision_id, symbol, order_id = db.rows(
        "SELECT CAST(d.id AS TEXT), d.symbol, d.order_id FROM decisions d WHERE d.order_id IS NOT NULL LIMIT 1"
    )[0]
    orders_before = db.value("SELECT count(*) FROM orders")
    cluster.kill_member("trader")
    eventually(lambda: httpx.get(f"{cluster.url('trader-2')}/readyz").status_code == 200, 30, "trader-2 taking over")
    again = api.post("/trade/execute", {"decision_id": decision_id, "symbol": symbol, "target_exposure": "0.5"})
    assert again["created"] is False and again["order"]["id"] == str(order_id)
    manual = {
        "idempotency_key": f"e2e-{uuid.uuid4()}",
        "source": "manual",
        "symbol": symbol,
        "action": "buy",
        "quantity": 1,
        "order_type": "market",
    }
    placed = api.post("/trade/execute", manual)
    assert placed["created"] is True
    repeated = api.post("/trade/execute", manual)
    assert repeated["created"] is False and repeated["order"]["id"] == placed["order"]["id"]
    assert db.value("SELECT count(*) FROM orders") == orders_before + 1
    eventually(lambda: settled(db), 60, "the standby's order settled")
    # New bars: the inferencers' calls fail over from the dead trader to the standby.
    backfill(api, *FAILOVER_DAYS)
    bars += trading_days(shared_data, *FAILOVER_DAYS) * len(SYMBOLS)
    eventually(lambda: decided(db, FAILOVER_DAYS[0]), 60, "decisions taken by the standby trader")
    failed_over = db.rows(
        "SELECT trade_status FROM decisions WHERE feature_ts >= :d",
        d=datetime.fromisoformat(FAILOVER_DAYS[0] + "T00:00+00:00"),
    )
    assert failed_over and all(status not in ("expired", "rejected") for (status,) in failed_over), failed_over
    eventually(lambda: settled(db), 60, "orders settled after the failover")
    check_database(db, bars)
    reconciliation = api.post("/trade/reconcile")
    assert reconciliation["differences"] == [], reconciliation
    print(f"distributed e2e took {time.monotonic() - started:.0f} s")
