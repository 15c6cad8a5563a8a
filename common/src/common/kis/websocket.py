"""The KIS real-time WebSocket client (kis-api.md §5): one session per appkey, typed events.

Usage::

    async with client.websocket() as ws:
        await ws.subscribe_trades("005930")
        await ws.subscribe_notices()
        async for event in ws:
            ...

A background task owns the session: it fetches an approval key, connects to
``<ws_url>/tryitout``, re-sends every registration, answers PINGPONG by echoing it as text,
parses data frames (decrypting notices with the key/iv of their ack) and reconnects when the
session drops, goes silent or is refused (``OPSP8996`` appkey in use, ``OPSP0011``).
``Connected.gap_since`` and ``Disconnected`` tell the consumer exactly which intervals may be
missing data; ``Reconnecting`` says when the next attempt comes and why.

Reconnects back off exponentially with jitter (``ws_reconnect_initial_seconds`` doubling to
``ws_reconnect_max_seconds``), on the wall clock whatever time the market runs in: KIS counts
attempts per real second, and a connect/refuse loop can get the appkey blocked (kis-api.md
§5.9). Only a session that stayed subscribed for ``ws_reconnect_reset_after_seconds`` starts
the back-off afresh; a refused one never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State

from common.clock import Clock, SystemClock
from common.errors import TradebotError
from common.kis.errors import (
    KisError,
    KisOperational,
    SubscriptionLimitExceeded,
    translate,
)
from common.kis.realtime import (
    BOOK_TR,
    TRADE_TR,
    AesKey,
    Connected,
    Disconnected,
    FrameError,
    KisEvent,
    MalformedFrame,
    Reconnecting,
    Subscription,
    SubscriptionFailed,
    is_data_frame,
    parse_data_frame,
)
from common.kis.settings import KisSettings
from common.metrics import KIS_WS_CONNECTS

log = structlog.get_logger(__name__)

ApprovalProvider = Callable[[], Awaitable[str]]

SUBSCRIBE = "1"
UNSUBSCRIBE = "2"
ALREADY_SUBSCRIBED = "OPSP0002"
NOT_SUBSCRIBED = "OPSP0003"
MAX_SUBSCRIBE_OVER = "OPSP0008"
INVALID_APPROVAL = "OPSP0011"
APPKEY_IN_USE = "OPSP8996"
_SESSION_ERRORS = frozenset({INVALID_APPROVAL, APPKEY_IN_USE})
_CLOSE_TIMEOUT_SECONDS = 5.0
_JITTER = secrets.SystemRandom()


@dataclass(frozen=True)
class _Ack:
    rt_cd: str
    msg_cd: str
    msg1: str

    @property
    def ok(self) -> bool:
        return self.rt_cd == "0"


class _SessionEnded(Exception):
    """Internal: the server refused the session (appkey in use, approval invalid)."""


@dataclass(frozen=True)
class _SessionEnd:
    reason: str  # safe to log
    refused: bool = False


class ReconnectBackoff:
    """Waits between connection attempts: ``initial`` doubling up to ``maximum``, each wait drawn
    from the upper half of its step (clients cut off together do not return together), back to
    ``initial`` only on ``reset``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        step = min(self.maximum, self.initial * 2 ** min(self.failures, 32))
        self.failures += 1
        return _JITTER.uniform(step / 2, step)

    def reset(self) -> None:
        self.failures = 0


def _describe(exc: BaseException) -> str:
    # The type and KIS code only: messages of transport errors may carry URLs or key material.
    msg_cd = getattr(exc, "msg_cd", None)
    return f"{type(exc).__name__} {msg_cd}" if msg_cd else type(exc).__name__


class KisWebSocket:
    """Subscriptions and typed events over one KIS WebSocket session, reconnecting as needed."""

    def __init__(
        self,
        settings: KisSettings,
        approval: ApprovalProvider,
        *,
        clock: Clock | None = None,
        wall: Clock | None = None,
    ) -> None:
        """``clock`` stamps events (the market's time); ``wall`` paces reconnects (real time)."""
        self.settings = settings
        self._approval = approval
        self._clock: Clock = clock or SystemClock()
        self._wall: Clock = wall or SystemClock()
        self._desired: dict[Subscription, None] = {}
        self._sent: set[Subscription] = set()
        self._pending: dict[Subscription, asyncio.Future[_Ack | None]] = {}
        self._keys: dict[str, AesKey] = {}
        self._approval_key: str | None = None
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._queue: asyncio.Queue[KisEvent | None] = asyncio.Queue(maxsize=settings.ws_queue_size)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._ready = asyncio.Event()
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"KisWebSocket(url={self.settings.ws_url!r}, subscriptions={len(self._desired)})"

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> KisWebSocket:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="kis-websocket")

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a session is open and its registrations were re-sent."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def close(self) -> None:
        """Stop the session task (named timeout) and end the event stream."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, _CLOSE_TIMEOUT_SECONDS)
        if self._queue.full():
            # Make room for the end-of-stream marker rather than leave the consumer waiting.
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._desired)

    async def drop_connection(self) -> None:
        """Close the current socket as if the network failed (reconnect follows); for drills and tests."""
        ws = self._ws
        if ws is not None:
            await ws.close()

    # --- events -------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[KisEvent]:
        return self.events()

    async def events(self) -> AsyncIterator[KisEvent]:
        """Typed events until ``close``: market records, notices, and connection changes."""
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def _emit(self, event: KisEvent) -> None:
        await self._queue.put(event)

    # --- subscriptions ------------------------------------------------------------------------

    async def subscribe_trades(self, symbol: str) -> None:
        await self.subscribe(TRADE_TR, symbol)

    async def subscribe_book(self, symbol: str) -> None:
        await self.subscribe(BOOK_TR, symbol)

    @property
    def notice_tr_id(self) -> str:
        return "H0STCNI9" if self.settings.is_paper else "H0STCNI0"

    async def subscribe_notices(self) -> None:
        """Order/fill notices of this account (tr_key = the HTS id; H0STCNI9 on paper)."""
        hts_id = self.settings.hts_id.get_secret_value()
        if not hts_id:
            raise KisOperational("KIS_HTS_ID is required for execution notices")
        await self.subscribe(self.notice_tr_id, hts_id)

    async def subscribe(self, tr_id: str, tr_key: str) -> None:
        """Register ``tr_id``/``tr_key``; kept across reconnects until ``unsubscribe``.

        When a session is open this waits for the server's ack and raises the translated error
        if it refuses; otherwise the registration is sent as soon as a session opens.
        """
        sub = Subscription(tr_id, tr_key)
        if sub in self._desired:
            return
        limit = self.settings.ws_max_subscriptions
        if len(self._desired) >= limit:
            raise SubscriptionLimitExceeded(
                f"KIS allows {limit} real-time registrations per session and {len(self._desired)} are active; "
                f"unsubscribe something before adding {sub.describe()}",
                msg_cd=MAX_SUBSCRIBE_OVER,
            )
        self._desired[sub] = None
        async with self._send_lock:
            ws = self._ws
            if ws is None or not self._ready.is_set() or sub in self._sent:
                return
            ack = await self._send_and_wait(ws, sub, SUBSCRIBE)
        if ack is not None and not ack.ok and ack.msg_cd != ALREADY_SUBSCRIBED:
            self._desired.pop(sub, None)
            self._sent.discard(sub)
            raise self._ack_error(ack)

    async def unsubscribe(self, tr_id: str, tr_key: str) -> None:
        sub = Subscription(tr_id, tr_key)
        if self._desired.pop(sub, "absent") == "absent":
            return
        async with self._send_lock:
            ws = self._ws
            if ws is None or sub not in self._sent:
                return
            self._sent.discard(sub)
            ack = await self._send_and_wait(ws, sub, UNSUBSCRIBE)
        if ack is not None and not ack.ok and ack.msg_cd != NOT_SUBSCRIBED:
            raise self._ack_error(ack)

    @staticmethod
    def _ack_error(ack: _Ack) -> KisError:
        if ack.msg_cd == MAX_SUBSCRIBE_OVER:
            return SubscriptionLimitExceeded(ack.msg1 or "MAX SUBSCRIBE OVER", msg_cd=ack.msg_cd)
        return translate(ack.msg_cd, ack.msg1, http_status=None, rt_cd=ack.rt_cd)

    def _message(self, sub: Subscription, tr_type: str) -> str:
        return json.dumps(
            {
                "header": {
                    "approval_key": self._approval_key or "",
                    "custtype": self.settings.custtype,
                    "tr_type": tr_type,
                    "content-type": "utf-8",
                },
                "body": {"input": {"tr_id": sub.tr_id, "tr_key": sub.tr_key}},
            }
        )

    async def _send_and_wait(self, ws: ClientConnection, sub: Subscription, tr_type: str) -> _Ack | None:
        """Send one (un)registration and wait for its ack; ``None`` when the session ended first."""
        future: asyncio.Future[_Ack | None] = asyncio.get_running_loop().create_future()
        self._pending[sub] = future
        try:
            await ws.send(self._message(sub, tr_type))
            if tr_type == SUBSCRIBE:
                self._sent.add(sub)
            return await asyncio.wait_for(future, self.settings.ws_ack_timeout_seconds)
        except ConnectionClosed:
            return None
        except TimeoutError:
            log.warning("kis.ws_ack_timeout", subscription=sub.describe(), tr_type=tr_type)
            return None
        finally:
            self._pending.pop(sub, None)

    # --- session ------------------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        if self._approval_key is None:
            self._approval_key = await self._approval()
        return await connect(
            self.settings.ws_url,
            ping_interval=None,  # KIS keeps sessions alive with its own PINGPONG messages
            open_timeout=self.settings.connect_timeout_seconds,
            close_timeout=_CLOSE_TIMEOUT_SECONDS,
            max_size=2**22,
        )

    async def _run(self) -> None:
        settings = self.settings
        backoff = ReconnectBackoff(settings.ws_reconnect_initial_seconds, settings.ws_reconnect_max_seconds)
        attempt = 0
        gap_since: datetime | None = None
        while not self._closing:
            attempt += 1
            try:
                ws = await self._open()
            except (OSError, TimeoutError, WebSocketException, TradebotError) as exc:
                # A refused approval key (wrong appkey, revoked) will not pass by itself, but
                # ending the task silently would leave streams hanging: it is reported on every
                # attempt, at most once a minute once the back-off has grown.
                KIS_WS_CONNECTS.labels("failed").inc()
                gap_since = gap_since or self._clock.now()
                await self._wait_before(attempt + 1, backoff.next_delay(), f"connect failed: {_describe(exc)}")
                continue
            self._ws = ws
            self._sent.clear()
            reader = asyncio.create_task(self._read_loop(ws), name="kis-websocket-reader")
            ready_since: datetime | None = None
            end = _SessionEnd("closed")
            try:
                resubscribed = await self._resubscribe_all(ws, reader)
                if not reader.done():
                    self._ready.set()
                    ready_since = self._wall.now()
                    KIS_WS_CONNECTS.labels("connected").inc()
                    log.info(
                        "kis.ws_connected",
                        attempt=attempt,
                        subscriptions=len(resubscribed),
                        reconnect=gap_since is not None,
                    )
                    if gap_since is not None:
                        self.reconnects += 1
                    await self._emit(Connected(self._clock.now(), attempt, resubscribed, gap_since))
                    gap_since = None
                end = await reader
            finally:
                self._ready.clear()
                self._ws = None
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                for future in self._pending.values():
                    if not future.done():
                        future.set_result(None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), _CLOSE_TIMEOUT_SECONDS)
            if self._closing:
                return
            now = self._clock.now()
            # Data is missing since the last good session ended, not since the last refusal.
            gap_since = gap_since or now
            if ready_since is None:
                KIS_WS_CONNECTS.labels("refused" if end.refused else "failed").inc()
            else:
                log.warning("kis.ws_disconnected", reason=end.reason)
                await self._emit(Disconnected(now, end.reason))
                if (self._wall.now() - ready_since).total_seconds() >= settings.ws_reconnect_reset_after_seconds:
                    backoff.reset()
            await self._wait_before(attempt + 1, backoff.next_delay(), end.reason)

    async def _wait_before(self, attempt: int, delay: float, reason: str) -> None:
        log.warning("kis.ws_reconnect_wait", attempt=attempt, retry_in=round(delay, 2), reason=reason)
        await self._emit(Reconnecting(self._clock.now(), attempt, delay, reason))
        await self._wall.sleep(delay)

    async def _resubscribe_all(
        self, ws: ClientConnection, reader: asyncio.Task[_SessionEnd]
    ) -> tuple[Subscription, ...]:
        done: list[Subscription] = []
        for sub in list(self._desired):
            if reader.done() or ws.state is not State.OPEN:
                break
            async with self._send_lock:
                if sub not in self._desired or sub in self._sent:
                    continue
                ack = await self._send_and_wait(ws, sub, SUBSCRIBE)
            if ack is None:
                continue
            if ack.ok or ack.msg_cd == ALREADY_SUBSCRIBED:
                done.append(sub)
            else:
                await self._drop_failed(sub, ack)
        return tuple(done)

    async def _drop_failed(self, sub: Subscription, ack: _Ack) -> None:
        self._desired.pop(sub, None)
        self._sent.discard(sub)
        log.warning("kis.ws_subscription_failed", subscription=sub.describe(), msg_cd=ack.msg_cd)
        await self._emit(SubscriptionFailed(self._clock.now(), sub, ack.msg_cd, ack.msg1))

    async def _read_loop(self, ws: ClientConnection) -> _SessionEnd:
        """Handle frames until the session ends; returns why."""
        try:
            return await self._read_frames(ws)
        finally:
            # Nobody will answer the registrations still waiting for an ack on this session.
            for future in self._pending.values():
                if not future.done():
                    future.set_result(None)

    async def _read_frames(self, ws: ClientConnection) -> _SessionEnd:
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), self.settings.ws_idle_timeout_seconds)
            except TimeoutError:
                return _SessionEnd("idle timeout")
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                return _SessionEnd(f"connection closed (code {code})")
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            try:
                await self._handle(ws, text)
            except _SessionEnded as exc:
                return _SessionEnd(str(exc), refused=True)

    async def _handle(self, ws: ClientConnection, text: str) -> None:
        now = self._clock.now()
        if is_data_frame(text):
            tr_id = text.split("|", 2)[1]
            try:
                records = parse_data_frame(text, self._keys, now)
            except FrameError as exc:
                log.warning("kis.ws_malformed_frame", tr_id=tr_id, reason=str(exc))
                await self._emit(MalformedFrame(now, tr_id, str(exc)))
                return
            for record in records:
                await self._emit(record)
            return
        try:
            message: Any = json.loads(text)
        except json.JSONDecodeError:
            log.warning("kis.ws_unknown_message", length=len(text))
            return
        header = message.get("header", {}) if isinstance(message, dict) else {}
        body = message.get("body", {}) if isinstance(message, dict) else {}
        tr_id = str(header.get("tr_id", ""))
        if tr_id == "PINGPONG":
            # Echo as text (python-kis); the server also accepts a pong frame or nothing.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(text)
            log.debug("kis.ws_pingpong")
            return
        if not isinstance(body, dict):
            return
        ack = _Ack(
            rt_cd=str(body.get("rt_cd", "")).strip(),
            msg_cd=str(body.get("msg_cd", "")).strip(),
            msg1=str(body.get("msg1", "")).strip(),
        )
        output = body.get("output")
        if isinstance(output, dict) and output.get("key") and output.get("iv"):
            self._keys[tr_id] = AesKey(key=str(output["key"]), iv=str(output["iv"]))
        if ack.msg_cd in _SESSION_ERRORS:
            if ack.msg_cd == INVALID_APPROVAL:
                self._approval_key = None
            log.warning("kis.ws_session_refused", msg_cd=ack.msg_cd)
            raise _SessionEnded(f"{ack.msg_cd} {ack.msg1}".strip())
        sub = Subscription(tr_id, str(header.get("tr_key", "")))
        future = self._pending.get(sub)
        if future is not None and not future.done():
            future.set_result(ack)
        elif not ack.ok and sub in self._desired and ack.msg_cd != ALREADY_SUBSCRIBED:
            await self._drop_failed(sub, ack)
