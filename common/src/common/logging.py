"""Structured logging, configured once by the composition root.

structlog renders JSON in production (console in development); the stdlib root logger gets
the same formatter so uvicorn, SQLAlchemy and aio-pika lines come out the same way. When
``LOGSTASH_HOST`` is set, every record also goes to Logstash through python-logstash's TCP
handler, as JSON lines. Secrets —
configured values and anything that looks like an appkey, appsecret, token, account number or
webhook URL — are redacted before any renderer or handler sees them.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import logstash
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from common import logbuffer

REDACTED = "[REDACTED]"

# Field names whose values are secret whatever they hold.
_SECRET_KEYS = re.compile(
    r"(appkey|app_key|appsecret|app_secret|secretkey|secret|password|passwd|token|authorization|"
    r"approval_key|api_key|cano|account|acnt|webhook)",
    re.IGNORECASE,
)
# Values that are secret wherever they appear in free text.
_SECRET_PATTERNS = (
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"https://(?:discord(?:app)?\.com|hooks\.slack\.com)/api/webhooks/\S+"),
    re.compile(r"https://api\.telegram\.org/bot\S+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{5,}"),  # JWTs
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password in URLs
)


class Redactor:
    """Removes secrets from an event dict: by key name, by known value, and by pattern."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and len(secret) >= 4 and secret not in self._secrets:
                self._secrets.append(secret)
        self._secrets.sort(key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        for pattern in _SECRET_PATTERNS:
            value = pattern.sub(REDACTED, value)
        return value

    def value(self, key: str, value: Any) -> Any:
        if _SECRET_KEYS.search(key) and value not in (None, "", 0):
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(key, v) for v in value]
        return value

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key in list(event_dict):
            if key == "event" and isinstance(event_dict[key], str):
                event_dict[key] = self.text(event_dict[key])
            elif key not in ("level", "timestamp", "logger"):
                event_dict[key] = self.value(key, event_dict[key])
        return event_dict


# One redactor per process: services register their configured secrets with it.
redactor = Redactor()


def _add_static(fields: dict[str, str]) -> Processor:
    def processor(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    return processor


def _render_exception_text(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # Tracebacks can carry secrets in their messages: render them here so they are redacted too.
    return structlog.processors.format_exc_info(logger, method_name, event_dict)


class LogstashJsonFormatter(structlog.stdlib.ProcessorFormatter):
    """Formats a record as a Logstash v1 event (bytes), for python-logstash's TCP handler.

    The event is the same redacted structlog dict stdout shows, plus the Logstash envelope
    fields (``@timestamp``, ``@version``, ``message``, ``host``, ``type``).
    """

    def __init__(self, service: str, shared: list[Processor]) -> None:
        super().__init__(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
        self._service = service
        self._host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> bytes:  # type: ignore[override]
        rendered = super().format(record)
        try:
            event: dict[str, Any] = json.loads(rendered)
        except ValueError:
            event = {"event": rendered}
        event.setdefault("service", self._service)
        event["@timestamp"] = event.get("timestamp")
        event["@version"] = "1"
        event["message"] = event.get("event")
        event["host"] = self._host
        event["type"] = "tradebot"
        return json.dumps(event, default=str).encode()


def configure(
    service: str,
    *,
    json_output: bool = True,
    level: str = "INFO",
    mode: str = "distributed",
    logstash_host: str | None = None,
    logstash_port: int = 5959,
    secrets: Iterable[str] = (),
    stream: Any = None,
) -> None:
    """Configure structlog and the stdlib root logger for this process. Call once at start."""
    redactor.add(secrets)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_static({"service": service, "mode": mode}),
        structlog.processors.StackInfoRenderer(),
        _render_exception_text,
        redactor,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tradebot", False):
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(stream or sys.stdout)
    console.setFormatter(formatter)
    handlers: list[logging.Handler] = [console]
    if logstash_host:
        shipper = logstash.TCPLogstashHandler(logstash_host, logstash_port, version=1)
        shipper.setFormatter(LogstashJsonFormatter(service, shared))
        handlers.append(shipper)
    # The dashboard's live log tail (``/dashboard/logs``) reads this process's recent events.
    handlers.append(logbuffer.BufferHandler(shared))
    for handler in handlers:
        handler._tradebot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "aio_pika", "aiormq", "httpx"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for noisy in ("aiormq", "aio_pika", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger(noisy).level, logging.WARNING))
    # At DEBUG the websockets library logs every frame: KIS approval keys, HTS ids and the
    # notices' AES keys, cut at 75 characters where no redactor can recognise them.
    logging.getLogger("websockets").setLevel(max(logging.getLogger("websockets").level, logging.INFO))


def bind_request(correlation_id: str, **fields: Any) -> None:
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id, **fields)


def scrub(mapping: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Redact a mapping in place (for error bodies and anything shown to a client)."""
    for key in list(mapping):
        mapping[key] = redactor.value(key, mapping[key])
    return mapping
