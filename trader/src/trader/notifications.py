"""Notifications to a Discord webhook (and Telegram when configured), off the trading path.

``notify`` only puts the message on a bounded queue and returns: a slow or dead webhook can
never hold up an order. One worker sends at most ``burst`` messages at once and ``per_minute``
a minute (a token bucket); what the limit or a full queue drops is counted and summarised in
the next message. Every message is recorded in ``notifications`` with what became of it.
Destination URLs hold secrets: they never appear in logs or records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock

from .models import NotificationRecord
from .settings import NotificationSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str  # fill, rejection, kill_switch, error, reconciliation
    message: str


class Notifier:
    """Queue + one sending worker; start with ``start()``, stop with ``stop()``."""

    def __init__(
        self,
        settings: NotificationSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._http = http or httpx.AsyncClient(timeout=settings.timeout_seconds)
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=settings.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._tokens = float(settings.burst)
        self._refilled = time.monotonic()
        self.suppressed = 0
        self.sent = 0

    @property
    def enabled(self) -> bool:
        s = self.settings
        return s.discord_webhook_url is not None or (
            s.telegram_bot_token is not None and s.telegram_chat_id is not None
        )

    def notify(self, kind: str, message: str) -> None:
        """Queue a message; never waits, never raises."""
        if not self.enabled or kind not in self.settings.events:
            return
        try:
            self._queue.put_nowait(Notification(kind, message[:1800]))
        except asyncio.QueueFull:
            self.suppressed += 1

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="trader-notifier")

    async def stop(self, timeout: float) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout)
        await self._http.aclose()

    async def _take_token(self) -> bool:
        """True when a message may go now; refills ``per_minute`` tokens a minute up to ``burst``."""
        now = time.monotonic()
        rate = self.settings.per_minute / 60.0
        self._tokens = min(float(self.settings.burst), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if not await self._take_token():
                self.suppressed += 1
                await self._record(item, "suppressed", None)
                continue
            message = item.message
            if self.suppressed:
                message += f"\n({self.suppressed} earlier notifications suppressed by the rate limit)"
                self.suppressed = 0
            error = await self._send(message)
            await self._record(item, "failed" if error else "sent", error)

    async def _send(self, message: str) -> str | None:
        s = self.settings
        errors: list[str] = []
        destinations: list[tuple[str, str, dict[str, str]]] = []
        if s.discord_webhook_url is not None:
            destinations.append(("discord", s.discord_webhook_url.get_secret_value(), {"content": message}))
        if s.telegram_bot_token is not None and s.telegram_chat_id is not None:
            url = f"{s.telegram_api_url.rstrip('/')}/bot{s.telegram_bot_token.get_secret_value()}/sendMessage"
            destinations.append(("telegram", url, {"chat_id": s.telegram_chat_id.get_secret_value(), "text": message}))
        for name, url, body in destinations:
            try:
                response = await self._http.post(url, json=body)
                if response.status_code >= 400:
                    errors.append(f"{name}: HTTP {response.status_code}")
            except httpx.HTTPError as e:
                # The exception text can contain the URL (and with it the secret): keep the type only.
                errors.append(f"{name}: {type(e).__name__}")
        if errors:
            log.warning("trader.notification_failed", errors=errors)
            return "; ".join(errors)[:200]
        self.sent += 1
        return None

    async def _record(self, item: Notification, status: str, error: str | None) -> None:
        try:
            async with self._sessionmaker.begin() as session:
                session.add(
                    NotificationRecord(
                        id=uuid.uuid4(),
                        at=self._clock.now(),
                        kind=item.kind,
                        message=item.message,
                        status=status,
                        error=error,
                    )
                )
        except Exception:
            log.exception("trader.notification_record_failed")
