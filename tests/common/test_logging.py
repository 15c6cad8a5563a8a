"""Logs are JSON, carry correlation ids, reach Logstash over TCP, and never carry secrets."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import structlog

from common.logging import REDACTED, configure, redactor


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    structlog.reset_defaults()


class TcpListener:
    """A one-connection TCP server on 127.0.0.1 collecting newline-separated lines."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(10)
        buffer = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                self.lines.extend(line.decode() for line in complete)

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return [json.loads(line) for line in self.lines]

    def close(self) -> None:
        self.sock.close()


def test_logstash_receives_json_events_with_secrets_redacted(restore_logging: None) -> None:
    listener = TcpListener()
    appsecret = "S3cr3t-" + "x" * 40
    try:
        configure(
            "trader",
            json_output=True,
            logstash_host="127.0.0.1",
            logstash_port=listener.port,
            secrets=[appsecret],
            stream=io.StringIO(),
        )
        log = structlog.get_logger("test")
        structlog.contextvars.bind_contextvars(correlation_id="corr-42")
        try:
            log.info("kis.token_issued", note=f"issued with {appsecret}", appkey="PSabcdefghijklmnop", symbol="005930")
            logging.getLogger("uvicorn.error").warning("plain stdlib line carrying %s", appsecret)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
        events = listener.wait_for(2)
    finally:
        listener.close()
    assert len(events) == 2
    first, second = events
    assert first["event"] == "kis.token_issued"
    assert first["service"] == "trader"
    assert first["correlation_id"] == "corr-42"
    assert first["@version"] == "1" and first["message"] == "kis.token_issued"
    assert first["symbol"] == "005930"
    assert first["appkey"] == REDACTED
    assert first["note"] == f"issued with {REDACTED}"
    assert second["level"] == "warning" and second["logger"] == "uvicorn.error"
    assert appsecret not in json.dumps(events)


def test_stdout_is_json_and_redacts_tokens_urls_and_accounts(restore_logging: None) -> None:
    out = io.StringIO()
    configure("data-collector", json_output=True, stream=out)
    log = structlog.get_logger("test")
    log.info(
        "kis.request",
        authorization="Bearer abcdefghijklmnopqrstuvwxyz",
        detail="calling with Bearer abcdefghijklmnopqrstuvwxyz0123",
        webhook="https://discord.com/api/webhooks/123/abcdef",
        dsn="postgresql://postgres:hunter22@db:5432/x",
        cano="12345678",
        price=71900,
    )
    event = json.loads(out.getvalue().strip().splitlines()[-1])
    assert event["service"] == "data-collector"
    assert event["authorization"] == REDACTED
    assert "abcdefghijklmnopqrstuvwxyz" not in event["detail"]
    assert event["webhook"] == REDACTED
    assert "hunter22" not in event["dsn"]
    assert event["cano"] == REDACTED
    assert event["price"] == 71900


def test_exception_tracebacks_are_redacted(restore_logging: None) -> None:
    out = io.StringIO()
    redactor.add(["topsecretvalue-123"])
    configure("trader", json_output=True, stream=out)
    try:
        raise ValueError("failed with topsecretvalue-123")
    except ValueError:
        structlog.get_logger("test").exception("trader.failed")
    event = json.loads(out.getvalue().strip().splitlines()[-1])
    assert "topsecretvalue-123" not in event["exception"]
    assert "ValueError" in event["exception"]
