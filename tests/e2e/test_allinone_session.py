"""All-in-one mode trades a whole accelerated session against the KIS simulator, end to end.

One real ``tradebot-allinone`` process (SQLite, in-process bus, the KIS simulator, the gateway),
configured by environment variables only, with the simulator's synthetic market running ``SPEED``
times faster than real time from before the open of ``SESSION_DAY``. Before the open, through
``/api/v1``: a stream job subscribes to the day's trades, and a tiny 1-minute model is trained on
the stored history and promoted. Then, all session long, the collector publishes the ticks, the
processor turns them into 1-minute bars and features, the inferencer decides on every bar and the
trader sends market orders that the simulator fills. After 15:30 the trader's orders, positions
and cash must equal the simulator's own account — read over the KIS protocol with the same
account — to the won.

The history is the one thing not collected here: KIS serves minute bars of the current session
only, so earlier sessions would take a real day each. The test stores what streaming them would
have stored: the simulator's own ticks of those days (they depend only on seed, code and day),
aggregated by the data-processor's code.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time as wall
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from common.clock import KST
from common.cluster import free_port
from common.db import create_engine, create_sessionmaker
from common.kis import KisClient, KisSettings
from common.kis.clock import follow_simulator_clock
from common.kis.models import Balance, DailyOrders
from common.kis.settings import KisDomain
from common.kis.sim import dev_account
from common.kis.sim.market import Market, SyntheticBarSource
from common.krx_calendar import KrxCalendar
from data_processor.aggregation import BarRow, daily_bars, minute_bars
from data_processor.repository import upsert_bars
from tests.e2e.support import eventually

SYMBOLS = ("005930", "000660")
SIM_SEED = 20240101
TICK_SECONDS = 10
SESSION_DAY = date(2026, 3, 4)  # a Wednesday, a KRX trading day
OPEN, CLOSE = time(9, 0), time(15, 30)
# 360 simulated seconds per second: the 6.5 h session takes 65 s. The simulator starts 30 s
# before the open: time to start, subscribe the stream and train and serve the model (~15 s idle,
# ~25 s on a busy machine; later, the first bars are simply not decided).
SPEED = 360.0
PREOPEN = time(6, 0)
# Minute bars 09:00…15:28 close during the session; the 15:29 one has no later print to close it
# (the simulator has no closing auction).
CLOSED_MINUTES = 389
HISTORY_SESSIONS = 4  # two to train on, one to validate, one to test
ACCOUNT_CASH = 100_000_000  # the simulator's paper dev account
ADMIN, PASSWORD = "admin", "session-e2e-correct-horse"
OPEN_STATUSES = ("NEW", "SUBMITTED", "PARTIALLY_FILLED")

pytestmark = pytest.mark.timeout(240)


def kst(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=KST)


def history_days() -> list[date]:
    """The KRX sessions before ``SESSION_DAY``, oldest first."""
    calendar = KrxCalendar()
    days = [calendar.previous_trading_day(SESSION_DAY)]
    while len(days) < HISTORY_SESSIONS:
        days.append(calendar.previous_trading_day(days[-1]))
    return days[::-1]


def simulator_market() -> Market:
    """The simulator's market, rebuilt here: its ticks depend only on seed, code and day."""
    return Market(SyntheticBarSource(SIM_SEED), SIM_SEED, TICK_SECONDS)


def session_prints(symbol: str, day: date) -> int:
    """Trades that add volume (a zero-volume print repeats the day's cumulative volume: not a new trade)."""
    path = simulator_market().path(symbol, day)
    assert path is not None
    return sum(1 for volume in path.volumes if volume > 0)


def session_minutes(market: Market, symbol: str, day: date) -> list[BarRow]:
    """The 1-minute bars of the simulator's ticks of ``symbol`` on ``day``."""
    path = market.path(symbol, day)
    assert path is not None, f"the simulator's market has no {symbol} on {day}"
    ticks = [
        (symbol, kst(day, path.tick_time(i)), path.cum_volume[i], path.prices[i], path.volumes[i])
        for i in range(path.count)
    ]
    return minute_bars(ticks)


async def store_history(database_url: str, days: list[date]) -> None:
    """Store the minute and daily bars of ``days`` as the data-processor would have."""
    market = simulator_market()
    minutes = [bar for symbol in SYMBOLS for day in days for bar in session_minutes(market, symbol, day)]
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await upsert_bars(session, minutes + daily_bars(minutes))
    finally:
        await engine.dispose()


def training_request(days: list[date]) -> dict[str, Any]:
    """A tiny 1-minute model: seconds of training, enough to decide on every bar."""
    first, train_end, validation, test = (d.isoformat() for d in days)
    return {
        "source": {"kind": "db", "symbols": list(SYMBOLS), "timeframe": "1m"},
        "split": {"train_start": first, "train_end": train_end, "val_start": validation, "val_end": validation,
                  "test_start": test, "test_end": test},
        "window": 2,
        "forecaster": {"epochs": 1, "max_samples": 100, "hidden": 8},
        "a3c": {"workers": 1, "envs_per_worker": 2, "n_steps": 10, "total_steps": 100, "eval_every_steps": 100,
                "hidden_size": 16, "episode_length": 32},
        "seeds": [0],
        "auto_promote": False,
    }  # fmt: skip


class Api:
    """The gateway's /api/v1 with the bootstrap admin's bearer token."""

    def __init__(self, gateway: str) -> None:
        self.http = httpx.Client(base_url=f"{gateway}/api/v1", timeout=30)
        token = self.http.post("/auth/token", data={"username": ADMIN, "password": PASSWORD})
        assert token.status_code == 200, token.text
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def post(self, path: str, body: Any = None) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code in (200, 201, 202), f"POST {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def orders(self) -> list[dict[str, Any]]:
        """Every order of the trader, over all pages of /trade/history."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.get("/trade/history", limit=500, offset=len(items))
            items += page["items"]
            if len(items) >= page["total"] or not page["items"]:
                return items

    def decisions(self) -> list[dict[str, Any]]:
        return [d for symbol in SYMBOLS for d in self.get("/inference/decisions", symbol=symbol, limit=1000)]


@dataclass
class Platform:
    process: subprocess.Popen[str]
    gateway: str
    sim_paper: str  # the simulator's paper-domain REST base URL
    sim_paper_ws: str
    data_dir: Path
    log: Path

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / 'tradebot.db'}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def alive(self) -> None:
        assert self.process.poll() is None, f"tradebot-allinone exited:\n{self.log_tail()}"

    def market_now(self) -> datetime:
        """The simulator's market time (its /admin/health)."""
        self.alive()
        body = httpx.get(f"{self.sim_paper}/admin/health", timeout=5).json()
        return datetime.fromisoformat(body["now"])


def stop(process: subprocess.Popen[str], timeout: float = 30) -> int:
    """Ctrl-C, then kill if it does not stop in time; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    data = tmp_path / "allinone"
    data.mkdir()
    gateway_port, web_port = free_port(), free_port()
    sim_ports = {name: free_port() for name in ("REAL_REST", "REAL_WS", "PAPER_REST", "PAPER_WS")}
    env = {
        **os.environ,
        **{f"KIS_SIM_{name}_PORT": str(port) for name, port in sim_ports.items()},
        "KIS_SIM_SEED": str(SIM_SEED),
        "KIS_SIM_TICK_SECONDS": str(TICK_SECONDS),
        "KIS_SIM_SPEED": str(SPEED),
        "KIS_SIM_START": kst(SESSION_DAY, PREOPEN).isoformat(),
        # Paper KIS allows 1 call a second; every decision asks for a price band and may order.
        "KIS_SIM_PAPER_REST_PER_SECOND": "200",
        "TRADEBOT_ALLINONE_GATEWAY_PORT": str(gateway_port),
        "TRADEBOT_ALLINONE_WEB_PORT": str(web_port),
        "TRADEBOT_ALLINONE_DATA_DIR": str(data),
        "TRADEBOT_LOG_JSON": "true",
        "API_GATEWAY_BOOTSTRAP_ADMIN_USERNAME": ADMIN,
        "API_GATEWAY_BOOTSTRAP_ADMIN_PASSWORD": PASSWORD,
        "MODEL_TRAINER_ARTIFACT_ROOT": str(data / "models"),
        "DATA_PROCESSOR_FEATURE_SETS": '["mt-ohlcv-v1"]',
        "INFERENCER_REGISTRY_POLL_SECONDS": "2",
        "TRADER_DECISION_ORDER_TYPE": "market",
        # One account of 100 M KRW: a decision may move a whole symbol's target at once.
        "TRADER_RISK__MAX_ORDER_KRW": str(ACCOUNT_CASH),
        "TRADER_RISK__MAX_POSITION_KRW": str(ACCOUNT_CASH),
        "TRADER_RISK__MAX_GROSS_EXPOSURE_KRW": str(ACCOUNT_CASH),
        # The ledger is never overwritten with the broker's figures: they must agree on their own.
        "TRADER_RECONCILE_ADOPT_BROKER": "false",
        "TRADER_RECONCILE_INTERVAL_SECONDS": "5",
    }
    env.pop("TRADEBOT_DATABASE_URL", None)
    log = data / "allinone.log"
    script = Path(sys.executable).parent / "tradebot-allinone"
    with log.open("w") as output:
        process = subprocess.Popen([str(script)], env=env, stdout=output, stderr=subprocess.STDOUT, text=True, cwd=data)
    platform = Platform(
        process=process,
        gateway=f"http://127.0.0.1:{gateway_port}",
        sim_paper=f"http://127.0.0.1:{sim_ports['PAPER_REST']}",
        sim_paper_ws=f"ws://127.0.0.1:{sim_ports['PAPER_WS']}",
        data_dir=data,
        log=log,
    )
    try:

        def up() -> bool:
            platform.alive()
            return httpx.get(f"{platform.gateway}/healthz", timeout=2).status_code == 200

        eventually(up, 90, "the all-in-one instance to listen", interval=0.25)
        yield platform
    finally:
        stop(process)


async def simulator_account(platform: Platform) -> tuple[Balance, DailyOrders]:
    """The paper account's balance and today's orders, asked over the KIS protocol like any client."""
    account = dev_account("paper")
    settings = KisSettings(
        domain=KisDomain.PAPER,
        paper_rest_url=platform.sim_paper,
        paper_ws_url=platform.sim_paper_ws,
        appkey=SecretStr(account.appkey),
        appsecret=account.appsecret,
        cano=SecretStr(account.cano),
        acnt_prdt_cd=SecretStr(account.acnt_prdt_cd),
        rate_per_second=20,
        max_pages=1000,
        # The services' token cache: a token of this app key is already issued; KIS throttles new ones.
        token_cache_path=platform.data_dir / "kis-tokens.json",
    )
    clock = await follow_simulator_clock(platform.sim_paper)
    async with KisClient.from_settings(settings, clock=clock) as client:
        return await client.get_balance(), await client.get_daily_orders(SESSION_DAY)


def prepare_model(api: Api, platform: Platform) -> dict[str, Any]:
    """History → a trained 1-minute model → promoted and served; the served model's summary."""
    days = history_days()
    asyncio.run(store_history(platform.database_url, days))
    accepted = api.post("/model/train", training_request(days))
    status = eventually(
        lambda: (s := api.get(f"/model/status/{accepted['job_id']}"))["status"] in ("succeeded", "failed") and s,
        120,
        "training",
        interval=1.0,
    )
    assert status["status"] == "succeeded", status
    model_id = status["model_ids"][0]
    api.post(f"/model/models/{model_id}/promote")
    served: dict[str, Any] = eventually(
        lambda: (m := api.get("/inference/model"))["loaded"] and m["model"]["model_id"] == model_id and m["model"],
        30,
        "the inferencer serving the promoted model",
    )
    assert served["timeframe"] == "1m" and served["feature_set"] == "mt-ohlcv-v1"
    return served


def wait_for_the_close(api: Api, platform: Platform, stream_id: str) -> dict[str, Any]:
    """Let the session run out, then stop the stream; the stream job's final state."""
    close = kst(SESSION_DAY, CLOSE)
    session_wall = (close - platform.market_now()).total_seconds() / SPEED
    eventually(lambda: platform.market_now() >= close + timedelta(minutes=3), session_wall + 30, "the close")
    api.post(f"/data/collect/{stream_id}/cancel")
    stopped: dict[str, Any] = eventually(
        lambda: (j := api.get(f"/data/collect/{stream_id}"))["status"] == "cancelled" and j, 30, "the stream to stop"
    )
    return stopped


def settled(api: Api) -> bool:
    """Every decision reached the trader, and no order is still open at the broker."""
    waiting = [d for d in api.decisions() if d["trade_status"] in (None, "pending", "error")]
    return not waiting and api.get("/trade/history", status=list(OPEN_STATUSES))["total"] == 0


def check_market_data(api: Api, stream: dict[str, Any]) -> None:
    """Every print of the day collected once; the features of every closed minute stored."""
    assert stream["progress"]["ticks_published"] == sum(session_prints(s, SESSION_DAY) for s in SYMBOLS)
    for symbol in SYMBOLS:
        rows = api.get(
            "/features", symbol=symbol, timeframe="1m", feature_set="mt-ohlcv-v1",
            start=kst(SESSION_DAY, OPEN).isoformat(), limit=10_000,
        )["rows"]  # fmt: skip
        assert len(rows) == CLOSED_MINUTES, f"{symbol}: {len(rows)} minute features"


def check_decisions_and_orders(decisions: list[dict[str, Any]], orders: list[dict[str, Any]]) -> None:
    """One decision per bar until the close; one order per decision key, and fills."""
    assert decisions, "no decisions"
    close = kst(SESSION_DAY, CLOSE)
    bars = sorted(datetime.fromisoformat(d["feature_ts"]) for d in decisions)
    assert kst(SESSION_DAY, OPEN) <= bars[0] and close - timedelta(minutes=5) <= bars[-1] < close
    per_bar = Counter((d["symbol"], d["feature_ts"]) for d in decisions)
    assert max(per_bar.values()) == 1, "a bar was decided twice"

    keys = Counter(o["idempotency_key"] for o in orders)
    assert max(keys.values(), default=1) == 1, f"duplicated orders: {[k for k, n in keys.items() if n > 1]}"
    decided = {d["id"] for d in decisions}
    assert all(o["source"] == "decision" and o["idempotency_key"] in decided for o in orders)
    by_id = {o["id"]: o for o in orders}
    assert all(by_id[d["order_id"]]["idempotency_key"] == d["id"] for d in decisions if d["order_id"])
    assert all(o["status"] not in OPEN_STATUSES for o in orders)
    assert any(o["filled_quantity"] > 0 for o in orders), f"no fills: {Counter(o['status'] for o in orders)}"


def check_ledger(orders: list[dict[str, Any]], positions: dict[str, Any], pnl: dict[str, Any]) -> None:
    """The trader's cash, fees and positions add up from its orders' fills."""
    fees = sum(o["commission"] + o["tax"] for o in orders)
    bought = sum(o["filled_value"] for o in orders if o["side"] == "buy")
    sold = sum(o["filled_value"] for o in orders if o["side"] == "sell")
    assert pnl["fees_paid"] == fees
    assert pnl["cash"] == ACCOUNT_CASH - bought + sold - fees
    net = Counter[str]()
    for o in orders:
        net[o["symbol"]] += o["filled_quantity"] * (1 if o["side"] == "buy" else -1)
    assert {s: p["quantity"] for s, p in positions.items()} == {s: q for s, q in net.items() if q}


def check_broker_agrees(
    orders: list[dict[str, Any]], positions: dict[str, Any], pnl: dict[str, Any], broker: tuple[Balance, DailyOrders]
) -> None:
    """The simulator holds exactly the trader's orders with the same fills, and the same cash and holdings."""
    balance, daily = broker
    # ODNO is ten digits, zero-padded, on the wire.
    ours = {int(o["broker_order_no"]): (o["symbol"], o["side"], o["filled_quantity"], o["filled_value"])
            for o in orders if o["broker_order_no"]}  # fmt: skip
    theirs = {int(r.order_no): (r.symbol, r.side, r.filled_quantity, r.filled_amount) for r in daily.orders}
    assert ours == theirs
    assert balance.summary.cash == pnl["cash"]
    held = {h.symbol: (h.quantity, h.purchase_amount) for h in balance.holdings if h.quantity > 0}
    assert held == {s: (p["quantity"], p["cost"]) for s, p in positions.items()}


def test_a_whole_session_trades_and_reconciles_with_the_simulator_to_the_won(platform: Platform) -> None:
    started = wall.monotonic()
    api = Api(platform.gateway)
    eventually(lambda: api.get("/trade/pnl")["cash"] == ACCOUNT_CASH, 30, "the trader's first reconciliation")
    assert platform.market_now() < kst(SESSION_DAY, OPEN), "the platform came up after the open"

    # Before the open: subscribe to the day's trades, and serve a model.
    stream = api.post("/data/collect", {"kind": "stream", "symbols": list(SYMBOLS), "channels": ["trades"]})
    served = prepare_model(api, platform)
    print(f"model {served['version']} served at {platform.market_now().time()} market time")

    # The session, then everything settled.
    stopped = wait_for_the_close(api, platform, stream["id"])
    eventually(lambda: settled(api), 60, "decisions delivered and orders settled")
    decisions, orders = api.decisions(), api.orders()
    positions = {p["symbol"]: p for p in api.get("/trade/positions")}
    pnl = api.get("/trade/pnl")
    reconciliation = api.post("/trade/reconcile")
    broker = asyncio.run(simulator_account(platform))
    print(
        f"{len(decisions)} decisions, {len(orders)} orders, cash {pnl['cash']:,}, "
        f"holdings {[(s, p['quantity']) for s, p in positions.items()]}"
    )

    check_market_data(api, stopped)
    check_decisions_and_orders(decisions, orders)
    check_ledger(orders, positions, pnl)
    check_broker_agrees(orders, positions, pnl, broker)
    assert reconciliation["differences"] == [], reconciliation
    assert reconciliation["broker_cash"] == reconciliation["ledger_cash"] == pnl["cash"]

    # Ctrl-C stops everything cleanly.
    assert stop(platform.process) == 0, platform.log_tail()
    assert "stopped cleanly" in platform.log.read_text()
    print(f"all-in-one session e2e took {wall.monotonic() - started:.0f} s")
