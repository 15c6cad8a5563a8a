from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from common.settings import RuntimeSettings, ServiceSettings, secret_values


class WebhookSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_", extra="ignore")

    webhook_url: SecretStr = SecretStr("changethis")


def test_placeholder_secret_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="webhook_url is a placeholder"):
        WebhookSettings()


def test_placeholder_secret_allowed_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_ENVIRONMENT", "development")
    assert WebhookSettings().webhook_url.get_secret_value() == "changethis"


def test_each_service_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_PORT", "9123")
    monkeypatch.setenv("TRADEBOT_PORT", "1")
    assert WebhookSettings().port == 9123


def test_runtime_settings_read_logstash_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGSTASH_HOST", "logstash.internal")
    monkeypatch.setenv("LOGSTASH_PORT", "5000")
    monkeypatch.setenv("TRADEBOT_AMQP_URL", "amqp://user:longpassword@mq:5672/")
    settings = RuntimeSettings()
    assert (settings.logstash_host, settings.logstash_port) == ("logstash.internal", 5000)
    assert "amqp://user:longpassword@mq:5672/" in secret_values(settings)
    assert "longpassword" not in repr(settings)
