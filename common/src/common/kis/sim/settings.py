"""Settings of the KIS simulator (prefix ``KIS_SIM_``) and the accounts it serves.

Every default matches kis-api.md: ports 9443/21000 (real) and 29443/31000 (paper), 18 REST
calls per second on real and 1 on paper, one new token per minute, tokens living 24 h and
re-issued unchanged within 6 h, 41 WebSocket registrations, the 26-field notice layout.
"""

from __future__ import annotations

import hashlib
import string
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from common.kis.sim.faults import FaultSpec
from common.settings import TradebotSettings

Domain = Literal["real", "paper"]

APPKEY_LENGTH = 36
APPSECRET_LENGTH = 180


class SimAccount(BaseModel):
    """One app key of the simulated broker and the securities account it is linked to."""

    appkey: str
    appsecret: SecretStr
    domain: Domain
    cano: str
    acnt_prdt_cd: str = "01"
    hts_id: str
    cash: int = Field(default=100_000_000, ge=0)
    name: str = "홍길동"

    @field_validator("appkey")
    @classmethod
    def _appkey_length(cls, value: str) -> str:
        if len(value) != APPKEY_LENGTH:
            raise ValueError(f"appkey must be {APPKEY_LENGTH} characters")
        return value

    @field_validator("appsecret")
    @classmethod
    def _appsecret_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) != APPSECRET_LENGTH:
            raise ValueError(f"appsecret must be {APPSECRET_LENGTH} characters")
        return value

    @field_validator("cano")
    @classmethod
    def _cano_digits(cls, value: str) -> str:
        if len(value) != 8 or not value.isdigit():
            raise ValueError("cano must be 8 digits")
        return value

    @field_validator("acnt_prdt_cd")
    @classmethod
    def _product_code(cls, value: str) -> str:
        if len(value) != 2 or not value.isdigit():
            raise ValueError("acnt_prdt_cd must be 2 digits")
        return value

    @property
    def account_no(self) -> str:
        """The 10-digit account number used in WebSocket notices (CANO + ACNT_PRDT_CD)."""
        return self.cano + self.acnt_prdt_cd


def _derived_key(label: str, length: int) -> str:
    """A deterministic, well-formed key for the development accounts (never a real credential)."""
    alphabet = string.ascii_letters + string.digits
    out: list[str] = []
    counter = 0
    while len(out) < length:
        digest = hashlib.sha256(f"tradebot-kis-sim:{label}:{counter}".encode()).digest()
        out.extend(alphabet[b % len(alphabet)] for b in digest)
        counter += 1
    return "".join(out[:length])


def dev_account(domain: Domain, index: int = 0) -> SimAccount:
    """The built-in development account ``index`` of ``domain`` (documented in docs/kis_simulator.md)."""
    prefix = "PS" if domain == "real" else "PSVT"
    label = f"{domain}-{index}"
    appkey = (prefix + _derived_key(label + "-key", APPKEY_LENGTH))[:APPKEY_LENGTH]
    return SimAccount(
        appkey=appkey,
        appsecret=SecretStr(_derived_key(label + "-secret", APPSECRET_LENGTH)),
        domain=domain,
        cano=f"{(50000000 if domain == 'real' else 60000000) + index:08d}",
        acnt_prdt_cd="01",
        hts_id=f"simuser{index}" if domain == "real" else f"simvirt{index}",
        cash=100_000_000,
    )


def default_accounts() -> list[SimAccount]:
    return [dev_account("real"), dev_account("paper")]


class SimulatorSettings(TradebotSettings):
    """Everything the simulator needs; environment variables use the ``KIS_SIM_`` prefix."""

    model_config = SettingsConfigDict(
        env_prefix="KIS_SIM_", env_nested_delimiter="__", extra="ignore", env_ignore_empty=True
    )

    host: str = "127.0.0.1"
    real_rest_port: int = Field(default=9443, ge=0, le=65535)
    real_ws_port: int = Field(default=21000, ge=0, le=65535)
    paper_rest_port: int = Field(default=29443, ge=0, le=65535)
    paper_ws_port: int = Field(default=31000, ge=0, le=65535)

    # Market: replay of CSV daily bars, or a seeded synthetic market when no directory is given.
    data_dir: Path | None = None
    seed: int = 20240101
    speed: float = Field(default=1.0, gt=0)
    start: datetime | None = None
    tick_seconds: int = Field(default=10, ge=1, le=60)

    accounts: list[SimAccount] = Field(default_factory=default_accounts)

    # Gateway limits (kis-api.md §2.1, §6.1).
    real_rest_per_second: float = Field(default=18.0, gt=0)
    paper_rest_per_second: float = Field(default=1.0, gt=0)
    token_calls_per_second: float = Field(default=1.0, gt=0)
    approval_calls_per_second: float = Field(default=1.0, gt=0)
    token_min_interval_seconds: float = Field(default=60.0, ge=0)
    token_reuse_seconds: float = Field(default=6 * 3600.0, ge=0)
    token_lifetime_seconds: int = Field(default=86_400, gt=0)

    # WebSocket.
    ws_ping_interval_seconds: float = Field(default=10.0, gt=0)
    ws_max_subscriptions: int = Field(default=41, ge=1)
    ws_max_records_per_frame: int = Field(default=10, ge=1, le=999)
    notice_layout: Literal[26, 23] = 26

    # Wall-clock seconds between two passes of the matching/publishing pump.
    pump_interval_seconds: float = Field(default=0.05, gt=0)

    faults: FaultSpec = Field(default_factory=FaultSpec)
    admin_enabled: bool = True

    @field_validator("tick_seconds")
    @classmethod
    def _tick_divides_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("tick_seconds must divide 60 so that minute bars hold whole ticks")
        return value

    def account_for_appkey(self, appkey: str) -> SimAccount | None:
        for account in self.accounts:
            if account.appkey == appkey:
                return account
        return None


def in_process_settings(**overrides: Any) -> SimulatorSettings:
    """A simulator for tests and benchmarks that drive it in-process: free loopback ports, limits
    that never throttle the caller, a fast matching pump. ``overrides`` replace any of these."""
    values: dict[str, Any] = {
        "real_rest_port": 0,
        "real_ws_port": 0,
        "paper_rest_port": 0,
        "paper_ws_port": 0,
        "paper_rest_per_second": 1000.0,
        "real_rest_per_second": 1000.0,
        "token_calls_per_second": 1000.0,
        "approval_calls_per_second": 1000.0,
        "pump_interval_seconds": 0.02,
    }
    values.update(overrides)
    return SimulatorSettings(**values)
