"""The collector's use cases behind the routes: jobs as views, and the market snapshot."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import Clock, wall_seconds
from common.contracts import Envelope, MarketQuoteV1
from common.db.collection import CollectionEvent, CollectionJob, MarketSnapshot
from common.errors import NotFound
from common.kis import KisClient
from common.kis.models import Quote
from data_collector import repository as repo
from data_collector.jobs import PRODUCER, JobManager
from data_collector.schemas import (
    BackfillRequest,
    BookTop,
    EventView,
    JobView,
    MarketView,
    Progress,
    SnapshotView,
    StreamRequest,
)

log = structlog.get_logger(__name__)

EVENTS_IN_JOB_VIEW = 20
MAX_REFRESH_SYMBOLS = 20
QUOTE_NAMESPACE = uuid.UUID("8d3f0b6e-52a1-4f0e-b7c4-1e9a6d2c5f73")
# KIS reports market capitalisation (hts_avls) in units of 100 million KRW.
MARKET_CAP_UNIT = 100_000_000


def _known(value: Decimal) -> Decimal | None:
    # KIS sends 0 where it has no figure (a fund without earnings, a newly listed stock).
    return None if value == 0 else value


def quote_message(symbol: str, quote: Quote, at: datetime) -> MarketQuoteV1:
    """``market.quote.v1`` of a KIS quote fetched at ``at``, its fundamentals None where KIS had none."""
    pct = _known(quote.foreign_holding_rate)
    return MarketQuoteV1(
        symbol=symbol,
        ts=at,
        price=quote.price,
        per=_known(quote.per),
        pbr=_known(quote.pbr),
        eps=_known(quote.eps),
        bps=_known(quote.bps),
        market_cap=quote.market_cap_100m_krw * MARKET_CAP_UNIT if quote.market_cap_100m_krw > 0 else None,
        foreign_ownership_pct=pct if pct is None or 0 <= pct <= 100 else None,
        listed_shares=quote.listed_shares if quote.listed_shares > 0 else None,
    )


def quote_envelope(quote: MarketQuoteV1) -> tuple[str, Envelope]:
    """Routing key ``quote.<symbol>``; the id is derived from symbol and fetch time (a resend is a duplicate)."""
    message_id = uuid.uuid5(QUOTE_NAMESPACE, f"{quote.symbol}|{quote.ts.isoformat()}")
    return f"quote.{quote.symbol}", Envelope(message_id=message_id, producer=PRODUCER, payload=quote)


class CollectorService:
    """Jobs (through the ``JobManager``) and the market snapshot, as the API shows them."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def submit(self, request: BackfillRequest | StreamRequest) -> tuple[JobView, bool]:
        job, created = await self.manager.submit(request)
        return self.view(job, []), created

    async def get(self, session: AsyncSession, job_id: uuid.UUID) -> JobView:
        job = await repo.get_job(session, job_id)
        if job is None:
            raise NotFound(f"no collection job {job_id}")
        events = await repo.list_events(session, job_id, EVENTS_IN_JOB_VIEW)
        return self.view(job, events)

    async def list_jobs(self, session: AsyncSession, statuses: Sequence[str] | None, limit: int) -> list[JobView]:
        return [self.view(job, []) for job in await repo.list_jobs(session, statuses, limit)]

    async def events(
        self, session: AsyncSession, job_id: uuid.UUID, kinds: Sequence[str] | None, limit: int
    ) -> list[EventView]:
        if await repo.get_job(session, job_id) is None:
            raise NotFound(f"no collection job {job_id}")
        return [event_view(e) for e in await repo.list_events(session, job_id, limit, kinds)]

    async def cancel(self, job_id: uuid.UUID) -> JobView:
        return self.view(await self.manager.cancel(job_id), [])

    def view(self, job: CollectionJob, events: Sequence[CollectionEvent]) -> JobView:
        return JobView(
            id=job.id,
            kind=job.kind,
            status=job.status,
            params=job.params,
            progress=progress(job, self.manager.clock),
            cancel_requested=job.cancel_requested,
            resumes=job.resumes,
            error=job.error,
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.run_started_at,
            finished_at=job.finished_at,
            events=[event_view(e) for e in events],
        )

    # --- market -------------------------------------------------------------------------------

    async def market(self, session: AsyncSession, symbols: Sequence[str] | None, refresh: bool) -> MarketView:
        """The latest snapshot per symbol; ``refresh`` asks KIS first (quote and book) for ``symbols``."""
        if refresh and symbols:
            await self._refresh(session, symbols)
        rows = await repo.list_snapshots(session, symbols)
        seen = {row.symbol for row in rows}
        return MarketView(
            snapshots=[snapshot_view(row) for row in rows],
            missing=[s for s in symbols or () if s not in seen],
        )

    async def publish_quotes(self, symbols: Sequence[str]) -> int:
        """Fetch a quote per symbol and publish its ``market.quote.v1`` (the scheduler's pre-open step)."""
        client: KisClient = await self.manager.kis.client()
        messages = []
        for symbol in symbols:
            quote = await client.get_quote(symbol)
            if quote.price > 0:
                messages.append(quote_envelope(quote_message(symbol, quote, self.manager.clock.now())))
        await self.manager.runtime.bus.publish_batch(messages)
        return len(messages)

    async def _refresh(self, session: AsyncSession, symbols: Sequence[str]) -> None:
        client: KisClient = await self.manager.kis.client()
        now = self.manager.clock.now()
        quotes: list[tuple[str, Envelope]] = []
        for symbol in symbols:
            quote = await client.get_quote(symbol)
            if quote.price <= 0:
                continue  # KIS answers unknown codes with an empty quote
            quotes.append(quote_envelope(quote_message(symbol, quote, now)))
            book = await client.get_order_book(symbol)
            row = {
                "symbol": symbol,
                "price": quote.price,
                "change": quote.change,
                "volume": quote.volume,
                "traded_at": None,
                "best_ask": book.asks[0].price or None,
                "best_ask_quantity": book.asks[0].quantity,
                "best_bid": book.bids[0].price or None,
                "best_bid_quantity": book.bids[0].quantity,
                "book_at": book.at,
                "source": "quote",
                "updated_at": now,
            }
            await repo.upsert_snapshots(session, [row], (*repo.TRADE_COLUMNS, *repo.BOOK_COLUMNS))
        await self.manager.runtime.bus.publish_batch(quotes)


def progress(job: CollectionJob, clock: Clock) -> Progress:
    """Where ``job`` stands; job times and ``until`` are market times, ``eta_seconds`` is wall-clock seconds."""
    now = clock.now()
    eta: float | None = None
    if job.kind == "stream":
        until = job.params.get("until")
        percent = 0.0
        if until and job.run_started_at is not None:
            end = datetime.fromisoformat(until)
            planned = (end - job.created_at).total_seconds()
            elapsed = (min(now, end) - job.created_at).total_seconds()
            percent = 100.0 if planned <= 0 else max(0.0, min(100.0, 100 * elapsed / planned))
            if job.status == "running":
                eta = round(wall_seconds(clock, max(0.0, (end - now).total_seconds())), 1)
        if job.status == "completed":
            percent = 100.0
    else:
        total = job.chunks_total
        percent = 100.0 if total == 0 and job.status == "completed" else 100 * job.chunks_done / total if total else 0.0
        done_this_run = job.chunks_done - job.run_chunks_at_start
        if job.status == "running" and job.run_started_at is not None and done_this_run > 0:
            per_chunk = (now - job.run_started_at).total_seconds() / done_this_run
            eta = round(wall_seconds(clock, per_chunk * (total - job.chunks_done)), 1)
    return Progress(
        symbols_total=job.symbols_total,
        symbols_done=job.symbols_done,
        chunks_total=job.chunks_total,
        chunks_done=job.chunks_done,
        percent=round(percent, 2),
        bars_published=job.bars_published,
        ticks_published=job.ticks_published,
        current_symbol=job.current_symbol,
        current_date=job.current_day,
        eta_seconds=eta,
    )


def event_view(event: CollectionEvent) -> EventView:
    return EventView(
        id=event.id, job_id=event.job_id, kind=event.kind, at=event.at, symbol=event.symbol, detail=event.detail
    )


def snapshot_view(row: MarketSnapshot) -> SnapshotView:
    rate: Decimal | None = None
    if row.price is not None and row.change is not None and row.price - row.change > 0:
        previous = Decimal(row.price - row.change)
        rate = (Decimal(row.change) * 100 / previous).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return SnapshotView(
        symbol=row.symbol,
        price=row.price,
        change=row.change,
        change_rate=rate,
        volume=row.volume,
        traded_at=row.traded_at,
        book=BookTop(
            ask=row.best_ask,
            ask_quantity=row.best_ask_quantity,
            bid=row.best_bid,
            bid_quantity=row.best_bid_quantity,
            at=row.book_at,
        ),
        source=row.source,
        updated_at=row.updated_at,
    )
