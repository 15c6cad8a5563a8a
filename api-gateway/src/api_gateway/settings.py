"""Settings of the api-gateway (environment prefix ``API_GATEWAY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings

DEFAULT_UPSTREAMS = {
    "data-collector": "http://127.0.0.1:8001",
    "data-processor": "http://127.0.0.1:8002",
    "model-trainer": "http://127.0.0.1:8003",
    "inferencer": "http://127.0.0.1:8004",
    "trader": "http://127.0.0.1:8005",
}


class ApiGatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="API_GATEWAY_", extra="ignore", env_ignore_empty=True)

    port: int = 8000
    # Service name -> base URL (JSON in the environment: API_GATEWAY_UPSTREAMS='{"trader": "http://…"}').
    upstreams: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_UPSTREAMS))
    health_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
