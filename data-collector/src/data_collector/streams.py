"""Stream jobs: KIS real-time trades and order book, published as tick batches.

Ticks are buffered and published as one ``MarketTickBatchV1`` per flush (every
``tick_flush_seconds`` or ``tick_batch_size`` ticks), confirmed by the bus before the job's
counters move. The latest trade and book top of each symbol go to ``market_snapshots``.
Disconnects, reconnect waits, reconnects and the gap between them are written to
``collection_events``: live data that was missed cannot be fetched again, so it is recorded,
never papered over.

``until`` is an instant on the market's clock (the broker's, which a simulator may run in the
past or accelerated): the session ends when that clock reaches it, and prints after it are not
published. Flushing is paced by the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time as wall
import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter
from pydantic import ValidationError

from common.clock import KST
from common.contracts import Envelope, MarketTickBatchV1, Side, Tick
from common.db.collection import CollectionJob
from common.kis import (
    Connected,
    Disconnected,
    KisEvent,
    KisWebSocket,
    MalformedFrame,
    OrderBookUpdate,
    Reconnecting,
    SubscriptionFailed,
    TradeTick,
)
from data_collector import repository as repo
from data_collector.schemas import StreamRequest
from data_collector.state import JobCancelled, RunState

if TYPE_CHECKING:
    from data_collector.jobs import JobManager

log = structlog.get_logger(__name__)

TICKS_PUBLISHED = Counter("tradebot_collector_ticks_published_total", "Ticks published by the collector")
CANCEL_POLL_SECONDS = 2.0
# KIS trade-side codes (CCLD_DVSN): 1 buy-initiated, 5 sell-initiated; 3 is the auction.
_SIDES: dict[str, Side] = {"1": "buy", "5": "sell"}


def tick_of(trade: TradeTick) -> Tick | None:
    """The contract tick of a KIS trade print; ``seq`` is the day's cumulative volume at the print,
    which orders prints within a second and is the same if the print is received twice."""
    traded_at = trade.traded_at
    if traded_at is None or trade.stck_prpr <= 0:
        return None
    return Tick(
        symbol=trade.symbol,
        ts=traded_at,
        seq=trade.acml_vol,
        price=trade.stck_prpr,
        volume=trade.cntg_vol,
        cum_volume=trade.acml_vol,
        side=_SIDES.get(trade.ccld_dvsn),
    )


class TickStream:
    """One stream job's run: subscribe, batch, publish, snapshot, record connection changes."""

    def __init__(self, manager: JobManager, job: CollectionJob, cancel: asyncio.Event) -> None:
        self.manager = manager
        self.job_id = job.id
        self.request = StreamRequest.model_validate(job.params)
        self.cancel = cancel
        self.settings = manager.settings
        self.state = RunState(
            checkpoint={},
            chunks_done=job.chunks_done,
            bars_published=job.bars_published,
            ticks_published=job.ticks_published,
            symbols_done=0,
        )
        self._ticks: list[Tick] = []
        self._trades: dict[str, dict[str, Any]] = {}
        self._books: dict[str, dict[str, Any]] = {}
        # The last print seen per symbol: a session re-registered after a reconnect may send a
        # print again, and the day's cumulative volume tells a repeat from a new print.
        self._last_print: dict[str, tuple[date, int]] = {}
        self._flush_lock = asyncio.Lock()
        self._last_flush = wall.monotonic()
        self.stop_reason: str | None = None

    async def run(self) -> None:
        clock = self.manager.clock
        if self.request.until is not None and clock.now() >= self.request.until:
            return
        client = await self.manager.kis.client()
        ws = client.websocket()
        async with ws:
            for symbol in self.request.symbols:
                if "trades" in self.request.channels:
                    await ws.subscribe_trades(symbol)
                if "book" in self.request.channels:
                    await ws.subscribe_book(symbol)
            watchers = [asyncio.create_task(self._watch(ws), name=f"collect-watch-{self.job_id}")]
            if self.request.until is not None:
                until = self.request.until
                watchers.append(asyncio.create_task(self._end_at(ws, until), name=f"collect-until-{self.job_id}"))
            try:
                async for event in ws:
                    await self._handle(event)
                    if len(self._ticks) >= self.settings.tick_batch_size:
                        await self.flush()
            finally:
                for watcher in watchers:
                    watcher.cancel()
                for watcher in watchers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                await self.flush()
        log.info("data_collector.stream_stopped", job_id=str(self.job_id), reason=self.stop_reason)
        if self.stop_reason == "cancelled":
            raise JobCancelled

    async def _watch(self, ws: KisWebSocket) -> None:
        """Flush quiet periods, and end the session when the job is cancelled."""
        last_poll = wall.monotonic()
        while True:
            # Flushing is paced by the wall clock: it bounds latency, whatever time the market runs in.
            await asyncio.sleep(self.settings.tick_flush_seconds)
            if self.cancel.is_set():
                self._stop("cancelled")
            elif wall.monotonic() - last_poll >= CANCEL_POLL_SECONDS:
                last_poll = wall.monotonic()
                try:
                    await self.manager.check_cancel(self.job_id, self.cancel)
                except JobCancelled:
                    self._stop("cancelled")
            if self.stop_reason is not None:
                await ws.close()
                return
            if wall.monotonic() - self._last_flush >= self.settings.tick_flush_seconds:
                await self.flush()

    async def _end_at(self, ws: KisWebSocket, until: datetime) -> None:
        """End the session when the market's clock reaches ``until``."""
        clock = self.manager.clock
        # The clock's own sleep waits its time at its speed (a wall-clock wait would not).
        while (left := (until - clock.now()).total_seconds()) > 0:
            await clock.sleep(left)
        self._stop("until reached")
        await ws.close()

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    async def _handle(self, event: KisEvent) -> None:
        if isinstance(event, TradeTick):
            self._on_trade(event)
        elif isinstance(event, OrderBookUpdate):
            self._books[event.symbol] = {
                "symbol": event.symbol,
                "best_ask": event.askp[0] or None,
                "best_ask_quantity": event.askp_rsqn[0],
                "best_bid": event.bidp[0] or None,
                "best_bid_quantity": event.bidp_rsqn[0],
                "book_at": event.received_at,
            }
        elif isinstance(event, Connected):
            if event.gap_since is not None:
                gap = {"from": event.gap_since.isoformat(), "to": event.at.isoformat()}
                await self.manager.record(
                    self.job_id, "reconnect", {**gap, "attempt": event.attempt, "resubscribed": len(event.resubscribed)}
                )
                await self.manager.record(
                    self.job_id,
                    "gap",
                    {**gap, "symbols": self.request.symbols, "channels": self.request.channels,
                     "reason": "real-time session reconnected; prints in between were not received"},
                )  # fmt: skip
        elif isinstance(event, Disconnected):
            await self.manager.record(self.job_id, "disconnect", {"at": event.at.isoformat(), "reason": event.reason})
        elif isinstance(event, Reconnecting):
            delay = round(event.delay_seconds, 1)
            await self.manager.record(
                self.job_id,
                "reconnecting",
                {"attempt": event.attempt, "retry_in": delay, "reason": event.reason,
                 "message": f"reconnecting in {delay:g} s: {event.reason}"},
            )  # fmt: skip
        elif isinstance(event, SubscriptionFailed):
            await self.manager.record(
                self.job_id,
                "subscription_failed",
                {"subscription": event.subscription.describe(), "msg_cd": event.msg_cd, "message": event.message},
            )
        elif isinstance(event, MalformedFrame):
            await self.manager.record(self.job_id, "malformed_frame", {"tr_id": event.tr_id, "reason": event.reason})

    def _on_trade(self, trade: TradeTick) -> None:
        try:
            tick = tick_of(trade)
        except ValidationError as exc:
            log.warning("data_collector.invalid_tick", job_id=str(self.job_id), symbol=trade.symbol, error=str(exc))
            return
        if tick is None or (self.request.until is not None and tick.ts > self.request.until):
            return
        day = tick.ts.astimezone(KST).date()
        last = self._last_print.get(tick.symbol)
        if last is not None and last >= (day, tick.seq):
            return
        self._last_print[tick.symbol] = (day, tick.seq)
        self._ticks.append(tick)
        self._trades[tick.symbol] = {
            "symbol": tick.symbol,
            "price": tick.price,
            "change": trade.prdy_vrss,
            "volume": trade.acml_vol,
            "traded_at": tick.ts,
        }

    async def flush(self) -> None:
        """Publish the buffered ticks (confirmed), then store snapshots and progress."""
        async with self._flush_lock:
            ticks, self._ticks = self._ticks, []
            trades, self._trades = self._trades, {}
            books, self._books = self._books, {}
            self._last_flush = wall.monotonic()
            if not (ticks or trades or books):
                return
            manager = self.manager
            now = manager.clock.now()
            for start in range(0, len(ticks), 50_000):
                batch = ticks[start : start + 50_000]
                symbols = {t.symbol for t in batch}
                first = batch[0]
                envelope = Envelope(
                    message_id=uuid.uuid5(
                        self.job_id, f"ticks:{first.symbol}:{first.ts.isoformat()}:{first.seq}:{len(batch)}"
                    ),
                    occurred_at=now,
                    producer="data-collector",
                    correlation_id=str(self.job_id),
                    payload=MarketTickBatchV1(ticks=batch),
                )
                routing = f"tick.{first.symbol}" if len(symbols) == 1 else "tick.mixed"
                await manager.runtime.bus.publish_batch([(routing, envelope)])
                TICKS_PUBLISHED.inc(len(batch))
                self.state.ticks_published += len(batch)
                self.state.chunks_done += 1
            async with manager.runtime.sessionmaker.begin() as session:
                trade_rows = [{**row, "source": "stream", "updated_at": now} for row in trades.values()]
                book_rows = [{**row, "source": "stream", "updated_at": now} for row in books.values()]
                await repo.upsert_snapshots(session, trade_rows, repo.TRADE_COLUMNS)
                await repo.upsert_snapshots(session, book_rows, repo.BOOK_COLUMNS)
                last = ticks[-1] if ticks else None
                await repo.update_job(
                    session,
                    self.job_id,
                    ticks_published=self.state.ticks_published,
                    chunks_done=self.state.chunks_done,
                    current_symbol=last.symbol if last else None,
                    updated_at=now,
                )
