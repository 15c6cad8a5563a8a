"""Streaming from the simulator's WebSocket: tick batches on the bus, the market snapshot, a
forced drop recorded as a disconnect, a reconnect and a gap, ``until`` in the market's time, and
reconnects that back off while the appkey's one session is held elsewhere."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect as ws_connect

from common.clock import KST
from common.contracts import Envelope, MarketQuoteV1

# Friday 19 January 2018, 10:00 KST: the replayed market is in session.
IN_SESSION = datetime(2018, 1, 19, 10, 0, tzinfo=KST)
SYMBOLS = ["005930", "000660"]


async def events_of(collector: Any, job_id: str) -> list[dict[str, Any]]:
    response = await collector.http.get(f"/data/collect/{job_id}/events")
    assert response.status_code == 200
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def test_streamed_ticks_feed_the_market_snapshot_and_a_dropped_session_is_recorded_as_a_gap(
    sqlite_url: str, shared_data: Path, harness: Any, wait_until: Any
) -> None:
    # speed 20 with 10-second ticks: a print every half second per symbol.
    async with harness(sqlite_url, shared_data, IN_SESSION, speed=20.0) as h:
        async with h.open_collector(tick_flush_seconds=0.1) as collector:
            body = {"kind": "stream", "symbols": SYMBOLS, "channels": ["trades", "book"]}
            response = await collector.http.post("/data/collect", json=body)
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]

            async def ticks_arrived() -> bool:
                return bool(h.sink.ticks >= 4)

            await wait_until(ticks_arrived)
            async with httpx.AsyncClient() as admin:
                dropped = await admin.post(f"{h.sim.paper.rest_url}/admin/faults", json={"drop_websockets": True})
            assert dropped.json()["sessions_dropped"] == 1

            async def reconnected_and_streaming() -> bool:
                kinds = {e["kind"] for e in await events_of(collector, job_id)}
                return {"disconnect", "reconnect", "gap"} <= kinds

            await wait_until(reconnected_and_streaming)
            after_drop = h.sink.ticks

            async def more_ticks() -> bool:
                return bool(h.sink.ticks > after_drop)

            await wait_until(more_ticks)

            market = (await collector.http.get("/data/market", params={"symbols": ",".join(SYMBOLS)})).json()
            assert market["missing"] == []
            by_symbol = {s["symbol"]: s for s in market["snapshots"]}
            for symbol in SYMBOLS:
                snap = by_symbol[symbol]
                assert snap["source"] == "stream"
                assert snap["price"] > 0 and snap["volume"] > 0
                book = snap["book"]
                assert book["ask"] > book["bid"] > 0 and book["ask_quantity"] >= 0
                assert snap["change_rate"] is not None

            job = await collector.job(job_id)
            assert job["status"] == "running"
            assert job["progress"]["ticks_published"] >= h.sink.ticks > 0
            gap = next(e for e in await events_of(collector, job_id) if e["kind"] == "gap")
            assert datetime.fromisoformat(gap["detail"]["from"]) <= datetime.fromisoformat(gap["detail"]["to"])
            assert gap["detail"]["symbols"] == sorted(SYMBOLS)

            # Every tick is a valid contract tick of a requested symbol, in batches of one message each.
            ticks = [t for m in h.sink.tick_messages for t in m.payload.ticks]
            assert {t.symbol for t in ticks} <= set(SYMBOLS)
            assert len({(t.symbol, t.ts, t.seq) for t in ticks}) == len(ticks)

            cancelled = await collector.http.post(f"/data/collect/{job_id}/cancel")
            assert cancelled.status_code == 202
            done = await collector.wait_for(job_id, lambda j: j["status"] == "cancelled", timeout=15)
            assert done["finished_at"] is not None


async def test_stream_ends_by_itself_at_until_and_a_second_stream_is_refused_meanwhile(
    sqlite_url: str, shared_data: Path, harness: Any
) -> None:
    async with harness(sqlite_url, shared_data, IN_SESSION, speed=20.0) as h:
        async with h.open_collector(tick_flush_seconds=0.1) as collector:
            until = h.sim.clock.now() + timedelta(seconds=40)  # two wall seconds at speed 20
            body = {"kind": "stream", "symbols": ["005930"], "channels": ["trades"], "until": until.isoformat()}
            job_id = (await collector.http.post("/data/collect", json=body)).json()["id"]

            other = {"kind": "stream", "symbols": ["000660"], "channels": ["trades"]}
            refused = await collector.http.post("/data/collect", json=other)
            assert refused.status_code == 409
            assert refused.json()["detail"]["job_id"] == job_id

            job = await collector.wait_for(job_id, lambda j: j["status"] == "completed", timeout=20)
            assert job["progress"]["percent"] == 100.0
            assert job["progress"]["ticks_published"] > 0


async def test_market_snapshot_can_be_refreshed_from_quotes_and_reports_unknown_symbols(
    sqlite_url: str, shared_data: Path, harness: Any
) -> None:
    async with harness(sqlite_url, shared_data, IN_SESSION) as h, h.open_collector() as collector:
        quotes: list[Envelope] = []

        async def keep(envelope: Envelope) -> None:
            quotes.append(envelope)

        await h.runtime.bus.subscribe("test-quotes", ["quote.#"], keep)
        assert (await collector.http.get("/data/market")).json() == {"snapshots": [], "missing": []}

        response = await collector.http.get("/data/market", params={"symbols": "005930,999999", "refresh": "true"})
        assert response.status_code == 200, response.text
        market = response.json()
        assert market["missing"] == ["999999"]
        [snap] = market["snapshots"]
        assert snap["symbol"] == "005930" and snap["source"] == "quote"
        assert snap["price"] > 0 and snap["book"]["ask"] > snap["book"]["bid"] > 0
        # The quote went out as market.quote.v1 on quote.<symbol>, with what it knew of the fundamentals.
        for _ in range(100):
            if quotes:
                break
            await asyncio.sleep(0.01)
        [message] = quotes
        quote = message.payload
        assert isinstance(quote, MarketQuoteV1) and message.producer == "data-collector"
        assert (quote.symbol, quote.price) == ("005930", snap["price"])
        assert quote.market_cap is None or quote.market_cap % 100_000_000 == 0

        assert (await collector.http.get("/data/market", params={"symbols": "12345"})).status_code == 422
        assert (await collector.http.get("/data/market", params={"refresh": "true"})).status_code == 422


async def test_until_is_market_time_and_an_accelerated_stream_ends_when_the_market_reaches_it(
    sqlite_url: str, shared_data: Path, harness: Any, wait_until: Any
) -> None:
    # The simulator replays January 2018 at 60x while the collector's runtime runs on today's clock.
    async with harness(sqlite_url, shared_data, IN_SESSION, speed=60.0) as h:
        async with h.open_collector(tick_flush_seconds=0.1) as collector:
            until = h.sim.clock.now() + timedelta(minutes=3)  # three market minutes: three wall seconds
            submitted = time.monotonic()
            body = {"kind": "stream", "symbols": SYMBOLS, "channels": ["trades"], "until": until.isoformat()}
            response = await collector.http.post("/data/collect", json=body)
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]

            job = await collector.wait_for(job_id, lambda j: j["status"] not in ("queued", "running"), timeout=15)
            ran_for = time.monotonic() - submitted
            assert job["status"] == "completed", job
            # It streamed for the market's three minutes: not zero, not until the system clock got there.
            assert 2.9 < ran_for < 10.0
            finished = datetime.fromisoformat(job["finished_at"])
            assert until <= finished <= until + timedelta(minutes=2)  # within two wall seconds at 60x
            assert job["progress"]["percent"] == 100.0

            published = job["progress"]["ticks_published"]
            assert published > 0

            async def all_ticks_delivered() -> bool:
                return bool(h.sink.ticks >= published)

            await wait_until(all_ticks_delivered, timeout=5)
            ticks = [t for m in h.sink.tick_messages for t in m.payload.ticks]
            assert max(t.ts for t in ticks) <= until
            assert min(t.ts for t in ticks) >= until - timedelta(minutes=4)


def refused_attempts() -> float:
    """Sessions the broker refused so far, as the collector's metric counts them."""
    value = REGISTRY.get_sample_value("tradebot_kis_ws_connection_attempts_total", {"outcome": "refused"})
    return value or 0.0


async def test_a_session_refused_with_appkey_in_use_backs_off_and_resumes_when_the_key_is_free(
    sqlite_url: str, shared_data: Path, harness: Any, wait_until: Any
) -> None:
    kis = {"ws_reconnect_initial_seconds": 1.0, "ws_reconnect_max_seconds": 4.0}
    async with harness(sqlite_url, shared_data, IN_SESSION, speed=20.0, kis=kis) as h:
        account = next(a for a in h.sim.settings.accounts if a.domain == "paper")
        # Another client holds the appkey's one WebSocket session (KIS answers others OPSP8996).
        async with httpx.AsyncClient(base_url=h.sim.paper.rest_url) as rest:
            approval = await rest.post(
                "/oauth2/Approval",
                json={"grant_type": "client_credentials", "appkey": account.appkey,
                      "secretkey": account.appsecret.get_secret_value()},
            )  # fmt: skip
        approval_key = approval.json()["approval_key"]
        async with ws_connect(h.sim.paper.ws_url) as holder:
            await holder.send(
                json.dumps(
                    {"header": {"approval_key": approval_key, "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
                     "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "000660"}}}
                )
            )  # fmt: skip
            assert json.loads(await holder.recv())["body"]["msg_cd"] == "OPSP0000"

            async def drain() -> None:
                # Keep reading, or a full receive queue would hold the close handshake back.
                async for _ in holder:
                    pass

            draining = asyncio.create_task(drain())

            # What the broker sees: every WebSocket connection opened on the paper domain.
            connections: list[float] = []
            serve = h.sim.hub.handle

            async def counting(connection: Any, domain: Any) -> None:
                if domain == "paper":
                    connections.append(time.monotonic())
                await serve(connection, domain)

            h.sim.hub.handle = counting
            refused_before = refused_attempts()

            async with h.open_collector(tick_flush_seconds=0.1) as collector:
                body = {"kind": "stream", "symbols": ["005930"], "channels": ["trades"]}
                job_id = (await collector.http.post("/data/collect", json=body)).json()["id"]
                started = time.monotonic()
                await asyncio.sleep(8.0)
                held = [t for t in connections if t - started <= 8.0]
                # Waits of about 1, 2, 4, 4 s: a handful of attempts, not hundreds.
                assert 2 <= len(held) <= 6, held
                assert h.sink.ticks == 0

                waits = [e for e in await events_of(collector, job_id) if e["kind"] == "reconnecting"]
                assert len(waits) >= 2
                reasons = {e["detail"]["reason"] for e in waits}
                assert "OPSP8996 ALREADY IN USE appkey" in reasons
                assert all(r == "OPSP8996 ALREADY IN USE appkey" or r.startswith("connect failed: ") for r in reasons)
                assert any(e["detail"]["message"].startswith("reconnecting in ") for e in waits)
                assert max(e["detail"]["retry_in"] for e in waits) >= 2.0  # the wait grew
                assert all(e["detail"]["retry_in"] <= 4.0 for e in waits)
                assert refused_attempts() - refused_before >= 2
                text = json.dumps(await events_of(collector, job_id))
                assert account.appkey not in text and approval_key not in text

                await holder.close()
                await draining

                async def resumed_streaming() -> bool:
                    kinds = {e["kind"] for e in await events_of(collector, job_id)}
                    return {"reconnect", "gap"} <= kinds and h.sink.ticks > 0

                await wait_until(resumed_streaming, timeout=10)
                assert (await collector.job(job_id))["status"] == "running"
                await collector.http.post(f"/data/collect/{job_id}/cancel")
                await collector.wait_for(job_id, lambda j: j["status"] == "cancelled", timeout=10)
