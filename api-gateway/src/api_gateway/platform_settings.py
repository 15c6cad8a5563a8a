"""The platform settings the dashboard edits: risk limits, watchlist, schedules, notifications.

Stored as one document in the ``settings`` table (name ``platform``). Secrets (the Discord
webhook, the Telegram bot token) are write-only: a PUT may set, keep or clear them; no
response ever contains them, only whether they are set.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import Annotated, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from api_gateway import repository
from api_gateway.models import SettingsRecord
from common.clock import Clock

log = structlog.get_logger(__name__)

PLATFORM = "platform"
MAX_KRW = 10**13  # ten trillion won: beyond any account this platform trades

Krw = Annotated[int, Field(ge=0, le=MAX_KRW, description="whole KRW")]
Symbol = Annotated[str, Field(pattern=r"^[0-9A-Z]{6}$", description="KRX short code, e.g. 005930")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Job = Literal["collect", "process", "train", "rebalance", "report"]
NotifyEvent = Literal["fill", "rejection", "kill_switch", "error", "daily_report"]
WEEKDAYS: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
DEFAULT_EVENTS: list[NotifyEvent] = ["fill", "rejection", "kill_switch", "error"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RiskLimits(_Strict):
    max_position_krw: Krw = 10_000_000
    max_gross_exposure_krw: Krw = 50_000_000
    max_order_value_krw: Krw = 5_000_000
    daily_loss_limit_krw: Krw = 1_000_000
    max_drawdown_pct: Decimal = Field(default=Decimal("10"), gt=0, le=100, max_digits=5, decimal_places=2)
    max_orders_per_minute: int = Field(default=30, ge=1, le=1_000)

    @model_validator(mode="after")
    def _consistent(self) -> RiskLimits:
        if self.max_order_value_krw > self.max_gross_exposure_krw:
            raise ValueError("max_order_value_krw cannot exceed max_gross_exposure_krw")
        if self.max_position_krw > self.max_gross_exposure_krw:
            raise ValueError("max_position_krw cannot exceed max_gross_exposure_krw")
        return self


class Schedule(_Strict):
    job: Job
    at: time = Field(description="KST wall-clock time, HH:MM")
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1, max_length=7)
    enabled: bool = True

    @field_validator("days")
    @classmethod
    def _unique_days(cls, days: list[Weekday]) -> list[Weekday]:
        if len(set(days)) != len(days):
            raise ValueError("days must not repeat")
        return days

    @field_validator("at")
    @classmethod
    def _naive_minute(cls, at: time) -> time:
        if at.tzinfo is not None:
            raise ValueError("give a KST wall-clock time without an offset")
        return at.replace(second=0, microsecond=0)


def _default_schedules() -> list[Schedule]:
    return [Schedule(job="collect", at=time(15, 40)), Schedule(job="process", at=time(16, 0))]


class NotificationsView(_Strict):
    events: list[NotifyEvent] = Field(default_factory=lambda: list(DEFAULT_EVENTS))
    telegram_chat_id: str | None = Field(default=None, pattern=r"^-?[0-9]{1,20}$")
    discord_webhook_configured: bool = False
    telegram_bot_token_configured: bool = False


class NotificationsUpdate(_Strict):
    events: list[NotifyEvent] = Field(default_factory=lambda: list(DEFAULT_EVENTS), max_length=5)
    telegram_chat_id: str | None = Field(default=None, pattern=r"^-?[0-9]{1,20}$")
    # Write-only. Absent or null: keep what is stored; "": clear; anything else: replace.
    discord_webhook_url: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None

    @field_validator("events")
    @classmethod
    def _unique_events(cls, events: list[NotifyEvent]) -> list[NotifyEvent]:
        return list(dict.fromkeys(events))

    @field_validator("discord_webhook_url")
    @classmethod
    def _discord_url(cls, value: SecretStr | None) -> SecretStr | None:
        url = value.get_secret_value() if value is not None else ""
        prefixes = ("https://discord.com/api/webhooks/", "https://discordapp.com/api/webhooks/")
        if url and (not url.startswith(prefixes) or len(url) > 512 or any(c.isspace() for c in url)):
            raise ValueError("must be a Discord webhook URL (https://discord.com/api/webhooks/…)")
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _telegram_token(cls, value: SecretStr | None) -> SecretStr | None:
        import re

        token = value.get_secret_value() if value is not None else ""
        if token and not re.fullmatch(r"[0-9]{3,20}:[A-Za-z0-9_-]{20,100}", token):
            raise ValueError("must be a Telegram bot token (<digits>:<secret>)")
        return value


class _SettingsBase(_Strict):
    risk: RiskLimits = Field(default_factory=RiskLimits)
    watchlist: list[Symbol] = Field(default_factory=list, max_length=200)
    schedules: list[Schedule] = Field(default_factory=_default_schedules, max_length=50)

    @field_validator("watchlist")
    @classmethod
    def _unique_symbols(cls, symbols: list[str]) -> list[str]:
        return list(dict.fromkeys(symbols))


class PlatformSettingsUpdate(_SettingsBase):
    """The whole document, as a PUT replaces it (secrets excepted: see ``NotificationsUpdate``)."""

    notifications: NotificationsUpdate = Field(default_factory=NotificationsUpdate)


class PlatformSettingsView(_SettingsBase):
    """What a GET returns: never a secret, only whether each one is set."""

    notifications: NotificationsView = Field(default_factory=NotificationsView)
    version: int = 0
    updated_at: str | None = None
    updated_by: str | None = None


SECRET_FIELDS = ("discord_webhook_url", "telegram_bot_token")


def _view(record: SettingsRecord | None) -> PlatformSettingsView:
    if record is None:
        return PlatformSettingsView()
    document: dict[str, Any] = dict(record.document)
    notifications = dict(document.get("notifications") or {})
    notifications["discord_webhook_configured"] = bool(record.secrets.get("discord_webhook_url"))
    notifications["telegram_bot_token_configured"] = bool(record.secrets.get("telegram_bot_token"))
    document["notifications"] = notifications
    return PlatformSettingsView.model_validate(
        {
            **document,
            "version": record.version,
            "updated_at": record.updated_at.isoformat(),
            "updated_by": record.updated_by,
        }
    )


class PlatformSettingsService:
    """Reads and replaces the ``platform`` settings document."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def get(self, session: AsyncSession) -> PlatformSettingsView:
        return _view(await repository.settings_by_name(session, PLATFORM))

    async def replace(self, session: AsyncSession, update: PlatformSettingsUpdate, by: str) -> PlatformSettingsView:
        record = await repository.settings_by_name(session, PLATFORM)
        secrets: dict[str, str] = dict(record.secrets) if record is not None else {}
        for name in SECRET_FIELDS:
            value: SecretStr | None = getattr(update.notifications, name)
            if value is None:
                continue
            if value.get_secret_value():
                secrets[name] = value.get_secret_value()
            else:
                secrets.pop(name, None)
        document = update.model_dump(mode="json", exclude={"notifications": set(SECRET_FIELDS)})
        now = self.clock.now()
        if record is None:
            record = SettingsRecord(name=PLATFORM, document=document, secrets=secrets, version=1, updated_at=now)
        else:
            record.document = document
            record.secrets = secrets
            record.version += 1
            record.updated_at = now
        record.updated_by = by
        await repository.save_settings(session, record)
        log.info("api_gateway.settings_updated", version=record.version, by=by, notification_targets=sorted(secrets))
        return _view(record)
