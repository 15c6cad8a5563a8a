"""Settings of the inferencer service (environment prefix ``INFERENCER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class InferencerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCER_", extra="ignore", env_ignore_empty=True)

    port: int = 8004
    # Where POST /trade/execute goes: one URL, or several comma-separated (the trader's replicas,
    # tried in turn). All-in-one mode finds the trader through the runner.
    trader_url: str | None = None
    trade: bool = Field(default=True, description="send decisions to the trader (off: decide and store only)")
    trader_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    send_max_age_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="a decision the trader has not taken by then is not sent"
    )
    outbox_poll_seconds: float = Field(default=1.0, gt=0, le=3600, description="how often unsent decisions are retried")
    retry_max_seconds: float = Field(default=30.0, gt=0, le=3600, description="longest wait between two attempts")
    model_uri: str | None = Field(default=None, description="a model directory to load when the registry has none")
    registry_poll_seconds: float = Field(default=30.0, gt=0, le=86_400)
    timeframes: frozenset[str] = frozenset({"1m", "1d"})
    burn_in_bars: int = Field(
        default=32, ge=0, le=10_000, description="bars a daily model steps over to rebuild recurrent state"
    )
    memory_bars: int = Field(default=512, ge=1, le=100_000, description="recent bars per symbol kept in memory")
    concurrent_decisions: int = Field(default=4, ge=1, le=64, description="decisions (and trader calls) in flight")
    forward_threads: int = Field(default=1, ge=1, le=16, description="threads running forward passes")
    torch_threads: int = Field(default=1, ge=1, le=64)
    task_stop_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    def trader_urls(self) -> list[str]:
        return [url.strip() for url in (self.trader_url or "").split(",") if url.strip()]
