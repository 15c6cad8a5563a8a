"""Settings of the api-gateway (environment prefix ``API_GATEWAY_``)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.settings import PLACEHOLDER_SECRETS, Environment, ServiceSettings

DEFAULT_UPSTREAMS: dict[str, str | list[str]] = {
    "data-collector": "http://127.0.0.1:8001",
    "data-processor": "http://127.0.0.1:8002",
    "model-trainer": "http://127.0.0.1:8003",
    "inferencer": "http://127.0.0.1:8004",
    "trader": "http://127.0.0.1:8005",
}
MIN_JWT_SECRET_LENGTH = 32


def is_placeholder(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS


class ApiGatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="API_GATEWAY_", extra="ignore", env_ignore_empty=True)

    port: int = 8000
    # Service name -> one base URL or several (round-robin), as JSON in the environment:
    # API_GATEWAY_UPSTREAMS='{"trader": ["http://trader-0:8005", "http://trader-1:8005"]}'.
    upstreams: dict[str, str | list[str]] = Field(default_factory=lambda: dict(DEFAULT_UPSTREAMS))
    # A replica that failed a connection or timed out is skipped for this long.
    upstream_cooldown_seconds: float = Field(default=10.0, ge=0, le=3600)
    upstream_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    upstream_max_connections: int = Field(default=200, ge=1, le=10_000)
    health_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # Off by default: one service being down should not take the whole gateway out of a load
    # balancer; /api/v1/system/health always shows every service.
    readyz_includes_upstreams: bool = False
    openapi_fetch_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    openapi_cache_seconds: float = Field(default=60.0, ge=0, le=86_400)

    jwt_secret: SecretStr = SecretStr("changethis")
    jwt_ttl_minutes: int = Field(default=15, ge=1, le=1440)
    key_cache_seconds: float = Field(
        default=5.0, ge=0, le=300, description="how long a verified API key is trusted without a database read"
    )
    jwt_issuer: str = "tradebot-api-gateway"
    bootstrap_admin_username: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@-]{3,64}$")
    bootstrap_admin_password: SecretStr | None = None

    # Token bucket per client (API key, user or address): sustained rate and burst.
    rate_limit_per_minute: float = Field(default=600.0, gt=0, le=1_000_000)
    rate_limit_burst: int = Field(default=60, ge=1, le=100_000)
    # Tighter bucket per address for logins and failed authentication (password guessing).
    login_rate_limit_per_minute: float = Field(default=20.0, gt=0, le=1_000_000)
    login_rate_limit_burst: int = Field(default=10, ge=1, le=100_000)

    dashboard_origin: str = "http://127.0.0.1:8080"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024 * 1024)

    @field_validator("upstreams")
    @classmethod
    def _upstreams_are_urls(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for service, urls in value.items():
            listed = [urls] if isinstance(urls, str) else urls
            if not listed:
                raise ValueError(f"upstream {service} has no URL")
            for url in listed:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"upstream {service}: {url!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _strong_jwt_secret(self) -> Self:
        if self.environment is Environment.DEVELOPMENT or self.environment is Environment.TEST:
            return self
        if len(self.jwt_secret.get_secret_value()) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(f"jwt_secret must be at least {MIN_JWT_SECRET_LENGTH} characters")
        return self

    @property
    def development(self) -> bool:
        return self.environment in (Environment.DEVELOPMENT, Environment.TEST)
