"""KIS connection settings (env prefix ``KIS_``), kis-api.md §1, §6.1.

Credentials are ``SecretStr`` so they never show up in a repr, a log line or an error message.
Base URLs default to the live KIS hosts and can be pointed at the simulator.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import TradebotSettings

REAL_REST_URL = "https://openapi.koreainvestment.com:9443"
PAPER_REST_URL = "https://openapivts.koreainvestment.com:29443"
REAL_WS_URL = "ws://ops.koreainvestment.com:21000"
PAPER_WS_URL = "ws://ops.koreainvestment.com:31000"

# Per-appkey REST limits of the 2026.04.20 notice (kis-api.md §6.1).
DEFAULT_RATE_PER_SECOND = {"real": 18.0, "paper": 1.0}
# The server refuses the 42nd registration of a session (kis-api.md §5.9).
MAX_WS_REGISTRATIONS = 41


class KisDomain(StrEnum):
    REAL = "real"
    PAPER = "paper"


def token_key_id(domain: KisDomain | str, appkey: str) -> str:
    """The ``kis_tokens`` primary key: sha256 hex of ``domain:appkey`` (never the appkey itself).

    Same derivation as ``common.db.models.kis_token_key``.
    """
    return hashlib.sha256(f"{KisDomain(domain).value}:{appkey}".encode()).hexdigest()


class KisSettings(TradebotSettings):
    """Everything the KIS client needs; one instance per appkey/domain."""

    model_config = SettingsConfigDict(env_prefix="KIS_", extra="ignore", env_ignore_empty=True)

    domain: KisDomain = KisDomain.PAPER
    real_rest_url: str = REAL_REST_URL
    paper_rest_url: str = PAPER_REST_URL
    real_ws_url: str = REAL_WS_URL
    paper_ws_url: str = PAPER_WS_URL
    ws_path: str = "/tryitout"

    appkey: SecretStr = SecretStr("")
    appsecret: SecretStr = SecretStr("")
    cano: SecretStr = Field(default=SecretStr(""), description="account number, first 8 digits")
    acnt_prdt_cd: SecretStr = Field(default=SecretStr("01"), description="account product code, last 2 digits")
    hts_id: SecretStr = Field(default=SecretStr(""), description="HTS user id: tr_key of the fill notices")
    custtype: Literal["P", "B"] = "P"

    rate_per_second: float | None = Field(default=None, gt=0, le=1000, description="default: real 18, paper 1")
    rate_burst: int | None = Field(default=None, ge=1, le=1000, description="default: one second's worth")

    token_store: Literal["file", "db"] = "file"  # noqa: S105 — a store kind, not a secret
    token_cache_path: Path = Path("var/kis-tokens.json")
    token_refresh_margin_seconds: float = Field(default=600.0, ge=0)
    token_issue_interval_seconds: float = Field(default=60.0, ge=0)
    # When a token must be re-issued inside the one-a-minute window, wait this long at most
    # (then raise a Retryable carrying the remaining wait).
    token_issue_max_wait_seconds: float = Field(default=61.0, ge=0)

    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    backoff_base_seconds: float = Field(default=0.2, ge=0)
    backoff_max_seconds: float = Field(default=5.0, ge=0)
    max_pages: int = Field(default=50, ge=1, le=10_000)

    order_tr_ids: Literal["new", "old"] = "new"
    use_hashkey: bool = False

    ws_max_subscriptions: int = Field(default=MAX_WS_REGISTRATIONS, ge=1, le=MAX_WS_REGISTRATIONS)
    ws_ack_timeout_seconds: float = Field(default=10.0, gt=0)
    ws_idle_timeout_seconds: float = Field(default=120.0, gt=0, description="reconnect when nothing arrives this long")
    # Reconnect back-off, in wall-clock seconds whatever time the market runs in: KIS counts
    # connection attempts per real second, and loops of them can get the appkey blocked (§5.9).
    ws_reconnect_initial_seconds: float = Field(default=1.0, gt=0, description="first wait; doubles per attempt")
    ws_reconnect_max_seconds: float = Field(default=60.0, gt=0, description="longest wait between attempts")
    ws_reconnect_reset_after_seconds: float = Field(
        default=60.0, ge=0, description="a session subscribed this long starts the back-off afresh when it drops"
    )
    ws_queue_size: int = Field(default=10_000, ge=1)

    @property
    def rest_url(self) -> str:
        url = self.real_rest_url if self.domain is KisDomain.REAL else self.paper_rest_url
        return url.rstrip("/")

    @property
    def ws_url(self) -> str:
        url = self.real_ws_url if self.domain is KisDomain.REAL else self.paper_ws_url
        return url.rstrip("/") + self.ws_path

    @property
    def is_paper(self) -> bool:
        return self.domain is KisDomain.PAPER

    @property
    def effective_rate_per_second(self) -> float:
        return self.rate_per_second or DEFAULT_RATE_PER_SECOND[self.domain.value]

    @property
    def effective_rate_burst(self) -> int:
        return self.rate_burst or max(1, int(self.effective_rate_per_second))

    @property
    def key_id(self) -> str:
        return token_key_id(self.domain, self.appkey.get_secret_value())

    def tr_id(self, real_tr_id: str) -> str:
        """The tr_id for this domain: trading/account TRs get a leading ``V`` on paper (kis-api.md §3.6)."""
        if self.is_paper and real_tr_id[:1] in ("T", "J", "C"):
            return "V" + real_tr_id[1:]
        return real_tr_id

    def secrets(self) -> list[str]:
        """Every credential value, for redaction and for tests that grep logs."""
        values = [self.appkey, self.appsecret, self.cano, self.hts_id]
        return [v.get_secret_value() for v in values if len(v.get_secret_value()) >= 4]
