"""The training and settings forms: from form fields to the gateway's JSON, and back.

Inputs are named by their JSON path (``a3c.lr``, ``schedules.0.at``), so a 422 from the
gateway (``loc: ["body", "a3c", "lr"]``) lands next to the field it names. Parsing here only
checks what the JSON needs (a number is a number, a date is a date); the rules themselves
(ranges, orderings, the embargo) are the services', and their messages are shown as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

Kind = Literal["int", "float", "date", "text", "ints", "floats", "symbols", "choice", "bool", "krw"]
SYMBOL = re.compile(r"^[0-9A-Z]{6}$")


class FormErrors(Exception):
    """Field name → message, for the fields that could not be read."""

    def __init__(self, errors: dict[str, str], document: dict[str, Any] | None = None) -> None:
        super().__init__("invalid form")
        self.errors = errors
        self.document = document or {}


@dataclass(frozen=True)
class Field:
    name: str  # the JSON path, dotted
    label: str
    kind: Kind
    default: Any = None
    help: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    step: str = "any"
    group: str = "basic"


def _split(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", text.strip()) if part]


def parse_value(field: Field, raw: str | None) -> Any:
    """The JSON value of one field, or None when left empty; ValueError with a message if unreadable."""
    text = (raw or "").strip()
    if field.kind == "bool":
        return text.lower() in ("on", "true", "1", "yes")
    if not text:
        if field.required:
            raise ValueError("required")
        return None
    match field.kind:
        case "int":
            try:
                return int(text.replace(",", "").replace("_", ""))
            except ValueError:
                raise ValueError("enter a whole number") from None
        case "krw":
            cleaned = re.sub(r"[₩,\s]|원$", "", text)
            if not re.fullmatch(r"\d+", cleaned):
                raise ValueError("enter an amount in whole won, e.g. 10,000,000")
            return int(cleaned)
        case "float":
            try:
                return float(text.replace(",", ""))
            except ValueError:
                raise ValueError("enter a number, e.g. 0.001") from None
        case "date":
            try:
                return date.fromisoformat(text).isoformat()
            except ValueError:
                raise ValueError("enter a date as YYYY-MM-DD") from None
        case "ints":
            try:
                return [int(p) for p in _split(text)]
            except ValueError:
                raise ValueError("enter whole numbers separated by commas, e.g. 0, 1, 2") from None
        case "floats":
            try:
                return [float(p) for p in _split(text)]
            except ValueError:
                raise ValueError("enter numbers separated by commas, e.g. 0, 0.5, 1") from None
        case "symbols":
            symbols = [p.upper() for p in _split(text)]
            bad = [s for s in symbols if not SYMBOL.fullmatch(s)]
            if bad:
                raise ValueError(f"not a 6-character KRX code: {', '.join(bad[:5])}")
            return symbols
        case "choice":
            if field.choices and text not in field.choices:
                raise ValueError(f"choose one of {', '.join(field.choices)}")
            return text
    return text


def put_path(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def parse_fields(fields: Sequence[Field], form: Mapping[str, str]) -> dict[str, Any]:
    """The nested JSON document of ``fields``; empty optional fields are left out (service defaults)."""
    document: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        try:
            value = parse_value(field, form.get(field.name))
        except ValueError as exc:
            errors[field.name] = str(exc)
            continue
        if value is not None:
            put_path(document, field.name, value)
    if errors:
        raise FormErrors(errors)
    return document


# --- training ---------------------------------------------------------------------------------

TRAINING_FIELDS: tuple[Field, ...] = (
    Field("source.kind", "Data source", "choice", "csv", "csv: a folder of daily bars; db: the collected bars",
          required=True, choices=("csv", "db")),
    Field("source.path", "CSV folder", "text", None, "a folder the model-trainer may read (MODEL_TRAINER_DATA_DIRS)"),
    Field("source.symbols", "Symbols", "symbols", None, "KRX codes, comma-separated; empty: every file in the folder"),
    Field("split.train_start", "Train from", "date", None, "empty: from the first bar"),
    Field("split.train_end", "Train until", "date", "2012-12-31", required=True),
    Field("split.val_start", "Validate from", "date", "2013-01-01", required=True),
    Field("split.val_end", "Validate until", "date", "2014-12-31", required=True),
    Field("split.test_start", "Test from", "date", "2015-01-01", required=True),
    Field("split.test_end", "Test until", "date", "2018-12-31", required=True),
    Field("a3c.workers", "Workers", "int", 2, "parallel A3C worker processes", step="1"),
    Field("a3c.lr", "Learning rate", "float", 0.001),
    Field("a3c.n_steps", "N-steps", "int", 20, "steps per update (bootstrapped return length)", step="1"),
    Field("a3c.entropy", "Entropy bonus", "float", 0.01),
    Field("a3c.gamma", "Gamma (discount)", "float", 0.99),
    Field("window", "Window (bars)", "int", 20, "bars of history the agent sees", step="1"),
    Field("actions", "Actions (target exposures)", "floats", "0, 0.25, 0.5, 0.75, 1", "fractions of equity, 0–1"),
    Field("costs.commission_rate", "Commission rate", "float", 0.00015),
    Field("costs.slippage_ticks", "Slippage (ticks)", "int", 1, step="1"),
    Field("seeds", "Seeds", "ints", "0, 1, 2, 3, 4", "one run per seed; results are mean ± std over seeds"),
    Field("walk_forward_folds", "Walk-forward folds", "int", 1, step="1"),
    Field("auto_promote", "Promote the best model if it beats buy & hold", "bool", True),
    Field("a3c.total_steps", "Total steps", "int", 40_000, step="1", group="advanced"),
    Field("a3c.envs_per_worker", "Environments per worker", "int", 8, step="1", group="advanced"),
    Field("a3c.episode_length", "Episode length", "int", 256, step="1", group="advanced"),
    Field("a3c.eval_every_steps", "Validate every (steps)", "int", 10_000, step="1", group="advanced"),
    Field("a3c.hidden_size", "Hidden size", "int", 64, step="1", group="advanced"),
    Field("forecaster.epochs", "Forecaster epochs", "int", 2, step="1", group="advanced"),
    Field("forecaster.max_samples", "Forecaster samples", "int", 8_000, step="1", group="advanced"),
    Field("forecaster.hidden", "Forecaster hidden size", "int", 16, step="1", group="advanced"),
    Field("regimes.k", "Regimes (k)", "int", 3, step="1", group="advanced"),
)  # fmt: skip

# A job that finishes in well under a minute on a laptop: to check the setup, not to trade on.
QUICK_PRESET: dict[str, str] = {
    "a3c.workers": "2", "a3c.n_steps": "10", "window": "10", "seeds": "0, 1", "a3c.total_steps": "800",
    "a3c.envs_per_worker": "4", "a3c.episode_length": "64", "a3c.eval_every_steps": "400", "a3c.hidden_size": "16",
    "forecaster.epochs": "1", "forecaster.max_samples": "500", "forecaster.hidden": "8",
}  # fmt: skip


def training_defaults(data_path: str | None) -> dict[str, str]:
    values = {f.name: _display(f.default) for f in TRAINING_FIELDS}
    values["source.kind"] = "csv" if data_path else "db"
    values["source.path"] = data_path or ""
    return values


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else ""
    return str(value)


def training_config(form: Mapping[str, str]) -> dict[str, Any]:
    document = parse_fields(TRAINING_FIELDS, form)
    source = document.get("source", {})
    if source.get("kind") == "csv" and not source.get("path"):
        raise FormErrors({"source.path": "a csv source needs a folder"})
    if source.get("kind") == "db" and not source.get("symbols"):
        raise FormErrors({"source.symbols": "the database source needs symbols"})
    if source.get("kind") == "db":
        source.pop("path", None)
    return document


# --- platform settings ------------------------------------------------------------------------

RISK_FIELDS: tuple[Field, ...] = (
    Field("risk.max_position_krw", "Max position per symbol", "krw", required=True),
    Field("risk.max_gross_exposure_krw", "Max gross exposure", "krw", required=True),
    Field("risk.max_order_value_krw", "Max order value", "krw", required=True),
    Field("risk.daily_loss_limit_krw", "Daily loss limit", "krw", required=True),
    Field("risk.max_drawdown_pct", "Max drawdown (%)", "text", required=True,
          help="from peak equity; engages the kill switch"),
    Field("risk.max_orders_per_minute", "Max orders per minute", "int", required=True, step="1"),
)  # fmt: skip
JOBS = ("collect", "process", "train", "rebalance", "report")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NOTIFY_EVENTS = ("fill", "rejection", "kill_switch", "error", "daily_report")


@dataclass
class SettingsForm:
    """What the settings page shows: the values to fill in, and the schedule rows."""

    values: dict[str, str]
    schedules: list[dict[str, Any]]
    events: list[str]


def settings_form(view: Mapping[str, Any]) -> SettingsForm:
    risk = view.get("risk", {})
    values = {f.name: _display(risk.get(f.name.split(".", 1)[1])) for f in RISK_FIELDS}
    for field in RISK_FIELDS:
        if field.kind == "krw" and values[field.name]:
            values[field.name] = f"{int(values[field.name]):,}"
    values["watchlist"] = ", ".join(view.get("watchlist", []))
    notifications = view.get("notifications", {})
    values["notifications.telegram_chat_id"] = notifications.get("telegram_chat_id") or ""
    schedules = [dict(s) for s in view.get("schedules", [])]
    for schedule in schedules:
        schedule["at"] = str(schedule.get("at", ""))[:5]
    return SettingsForm(values=values, schedules=schedules, events=list(notifications.get("events", [])))


def settings_document(form: Mapping[str, str], lists: Mapping[str, list[str]]) -> dict[str, Any]:
    """The PUT body. ``lists`` holds the multi-valued fields (checkbox groups) by name."""
    errors: dict[str, str] = {}
    document: dict[str, Any] = {}
    try:
        document = parse_fields(RISK_FIELDS, form)
    except FormErrors as exc:
        errors.update(exc.errors)
    try:
        document["watchlist"] = parse_value(Field("watchlist", "Watchlist", "symbols"), form.get("watchlist")) or []
    except ValueError as exc:
        errors["watchlist"] = str(exc)
    schedules: list[dict[str, Any]] = []
    rows = sorted({int(m.group(1)) for k in form for m in [re.match(r"^schedules\.(\d+)\.job$", k)] if m})
    for row in rows:
        prefix = f"schedules.{row}"
        job = form.get(f"{prefix}.job", "").strip()
        if not job or form.get(f"{prefix}.remove"):
            continue
        at = form.get(f"{prefix}.at", "").strip()
        if not re.fullmatch(r"\d{1,2}:\d{2}", at):
            errors[f"schedules.{len(schedules)}.at"] = "enter a time as HH:MM (KST)"
        schedules.append(
            {
                "job": job,
                "at": at,
                "days": lists.get(f"{prefix}.days", []),
                "enabled": bool(form.get(f"{prefix}.enabled")),
            }
        )
    document["schedules"] = schedules
    notifications: dict[str, Any] = {
        "events": lists.get("notifications.events", []),
        "telegram_chat_id": form.get("notifications.telegram_chat_id", "").strip() or None,
    }
    for secret in ("discord_webhook_url", "telegram_bot_token"):
        given = form.get(f"notifications.{secret}", "").strip()
        if form.get(f"notifications.{secret}.clear"):
            notifications[secret] = ""
        elif given:
            notifications[secret] = given
    document["notifications"] = notifications
    if errors:
        raise FormErrors(errors, document)
    return document
