"""Settings of the web-interface (environment prefix ``WEB_INTERFACE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class WebInterfaceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WEB_INTERFACE_", extra="ignore", env_ignore_empty=True)

    port: int = 8080
    gateway_url: str = "http://127.0.0.1:8000"
    gateway_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
