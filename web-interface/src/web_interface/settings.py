"""Settings of the web-interface (environment prefix ``WEB_INTERFACE_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class WebInterfaceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WEB_INTERFACE_", extra="ignore", env_ignore_empty=True)

    port: int = 8080
    gateway_url: str = "http://127.0.0.1:8000"
    gateway_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Encrypts the session cookie (which holds the gateway token). A placeholder refuses to load
    # outside development/test; in development it is replaced by a per-process random key, so
    # sessions do not survive a restart.
    session_secret: SecretStr = SecretStr("changethis")
    session_cookie: str = Field(default="tradebot_session", pattern=r"^[A-Za-z0-9_]{1,64}$")
    # Send the cookie over HTTPS only: turn on behind TLS (it is off for http://127.0.0.1).
    cookie_secure: bool = False
    # Live updates: how often each connected page's server side asks the gateway, how many
    # streams may be open at once, and how long one stream lasts before the browser reconnects
    # (bounded so that a restart never waits long for open streams).
    live_interval_seconds: float = Field(default=3.0, ge=0.5, le=60)
    live_max_streams: int = Field(default=50, ge=1, le=1_000)
    live_stream_seconds: float = Field(default=30.0, ge=5, le=600)
    # Prefilled in the training form: a folder of <symbol>.csv daily bars the model-trainer may
    # read (one of its MODEL_TRAINER_DATA_DIRS); empty means the database's bars.
    training_data_path: str | None = None
