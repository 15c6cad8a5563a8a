"""Settings through pydantic-settings only: one prefix per service, secrets as ``SecretStr``.

``RuntimeSettings`` (prefix ``TRADEBOT_``) holds what every service shares: environment,
database, bus, logging. Each service subclasses ``ServiceSettings`` with its own prefix
(``TRADER_``, ``DATA_COLLECTOR_``…). Outside development and test, a secret left at a
placeholder value refuses to load.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset(
    {"", "changethis", "changeme", "change-me", "change_me", "placeholder", "secret", "password", "xxx", "todo"}
)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Mode(StrEnum):
    ALLINONE = "allinone"
    DISTRIBUTED = "distributed"


class TradebotSettings(BaseSettings):
    """Base of every settings class: ignores unknown variables, refuses placeholder secrets."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        validation_alias=AliasChoices("TRADEBOT_ENVIRONMENT", "TRADEBOT_ENV"),
    )

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.environment is Environment.DEVELOPMENT or self.environment is Environment.TEST:
            return self
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"{name} is a placeholder; set a real secret for {self.environment.value}")
        return self


class RuntimeSettings(TradebotSettings):
    """What every service of one deployment shares."""

    model_config = SettingsConfigDict(env_prefix="TRADEBOT_", extra="ignore", env_ignore_empty=True)

    mode: Mode = Mode.DISTRIBUTED
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./var/tradebot.db")
    # No AMQP URL means the in-process bus, which only makes sense in all-in-one mode.
    amqp_url: SecretStr | None = None
    bus_exchange: str = "market"
    # Put before every queue name: deployments (or test runs) sharing one RabbitMQ vhost keep
    # their queues apart, as they keep their exchanges apart with ``bus_exchange``.
    bus_queue_prefix: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9_.:-]*$")
    bus_prefetch: int = Field(default=64, ge=1, le=10_000)
    bus_max_attempts: int = Field(default=3, ge=1, le=100)
    bus_retry_delay_seconds: float = Field(default=1.0, ge=0, le=3600)
    shutdown_drain_timeout_seconds: float = Field(default=10.0, ge=0, le=600)
    migrate_on_start: bool = True
    log_json: bool = True
    log_level: str = "INFO"
    logstash_host: str | None = Field(
        default=None, validation_alias=AliasChoices("LOGSTASH_HOST", "TRADEBOT_LOGSTASH_HOST")
    )
    logstash_port: int = Field(default=5959, validation_alias=AliasChoices("LOGSTASH_PORT", "TRADEBOT_LOGSTASH_PORT"))


class ServiceSettings(TradebotSettings):
    """Base for one service's own settings; subclasses set ``env_prefix``."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)


def secret_values(settings: BaseSettings) -> list[str]:
    """Every secret a settings object holds, for log redaction."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if len(secret) >= 4:
                found.append(secret)
        elif isinstance(value, BaseSettings):
            for _, inner in value:
                walk(inner)

    walk(settings)
    return found
