"""Settings of the trader service (environment prefix ``TRADER_``, nested with ``__``).

Every risk rule has its own setting, and ``None`` (or ``0`` where a count is meant) turns a
limit off. Money is whole KRW; ratios are Decimal. Webhook URLs and bot tokens are secrets.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class RiskLimits(BaseModel):
    """The risk engine's limits; each one can be switched off on its own."""

    model_config = ConfigDict(frozen=True)

    check_cash: bool = True
    check_sellable: bool = True
    max_position_krw: int | None = Field(default=30_000_000, gt=0, description="per symbol, at the order price")
    max_gross_exposure_krw: int | None = Field(default=90_000_000, gt=0, description="sum of position values")
    max_order_krw: int | None = Field(default=20_000_000, gt=0)
    max_orders_per_minute: int | None = Field(default=30, gt=0)
    daily_loss_limit_krw: int | None = Field(
        default=3_000_000, gt=0, description="blocks buys once equity fell this much today"
    )
    max_drawdown: Decimal | None = Field(
        default=Decimal("0.10"), gt=0, lt=1, description="from peak equity; engages the kill switch"
    )
    enforce_session_hours: bool = True
    enforce_price_limits: bool = True


class NotificationSettings(BaseModel):
    """Where notifications go; nothing is sent when no destination is configured."""

    model_config = ConfigDict(frozen=True)

    discord_webhook_url: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    # At most `burst` messages at once and `per_minute` a minute; the rest is counted and
    # summarised in the next message that goes out.
    per_minute: int = Field(default=20, ge=1, le=600)
    burst: int = Field(default=5, ge=1, le=100)
    queue_size: int = Field(default=200, ge=1, le=10_000)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    events: frozenset[str] = frozenset({"fill", "rejection", "kill_switch", "error", "reconciliation"})


class TraderSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRADER_", extra="ignore", env_ignore_empty=True, env_nested_delimiter="__"
    )

    port: int = 8005
    risk: RiskLimits = RiskLimits()
    notifications: NotificationSettings = NotificationSettings()

    # Decisions become marketable limit orders this many ticks through the reference price
    # (or market orders with "market"); the cap keeps one decision from trading the whole book.
    decision_order_type: Literal["limit", "market"] = "limit"
    decision_slippage_ticks: int = Field(default=2, ge=0, le=50)
    min_rebalance_krw: int = Field(default=10_000, ge=0, description="smaller target changes are not traded")
    rebalance_band: Decimal = Field(
        default=Decimal("0.005"), ge=0, lt=1, description="nor changes smaller than this fraction of equity"
    )

    # One writer per account: the lease is renewed every ttl/3 and taken over once it expires.
    lease_ttl_seconds: float = Field(default=15.0, gt=0.2, le=600)
    poll_interval_seconds: float = Field(
        default=2.0, gt=0, le=600, description="inquire-daily-ccld while orders are open"
    )
    reconcile_interval_seconds: float = Field(default=60.0, gt=0, le=86_400)
    reconcile_adopt_broker: bool = Field(
        default=True, description="take the broker's positions and cash when they differ and nothing is in flight"
    )
    use_fill_notices: bool = True
    max_submit_attempts: int = Field(
        default=2, ge=1, le=5, description="only after the broker said it has no such order"
    )
    task_stop_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
