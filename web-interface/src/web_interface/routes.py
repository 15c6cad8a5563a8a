"""The dashboard's HTTP routes: pages, their forms, the CSV export and the live event stream.

Routes only read the request, ask the gateway (``views``/``forms`` shape what they need) and
render. The browser never talks to the gateway: its scripts call ``/events`` here, and every
form posts here, with the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from common.clock import KST
from web_interface import forms, views
from web_interface.gateway import Gateway, GatewayError, GatewayUnreachable, Invalid, NotLoggedIn, NotPermitted
from web_interface.session import Session, SessionCookie, new_session
from web_interface.settings import WebInterfaceSettings

log = structlog.get_logger(__name__)

ORDER_STATUSES = ("NEW", "SUBMITTED", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_SERVICES = ("api-gateway", "data-collector", "data-processor", "model-trainer", "inferencer", "trader", "common")
CSV_MAX_ROWS = 10_000
NOTICES = {
    "logged_out": "You are logged out.",
    "expired": "Your session has ended; please log in again.",
    "kill_engaged": "Kill switch engaged: new orders are rejected until you release it.",
    "kill_released": "Kill switch released: orders are accepted again.",
    "settings_saved": "Settings saved.",
    "promoted": "Model promoted: the inferencer switches to it.",
    "job_started": "Training job started.",
}


class CsrfRejected(Exception):
    """A form without this session's CSRF token (an old page, or another site)."""


@dataclass
class Web:
    """Everything a route needs, built once per app."""

    settings: WebInterfaceSettings
    gateway: Gateway
    cookie: SessionCookie
    templates: Jinja2Templates
    mode: str
    live_streams: int = 0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def session_of(self, request: Request) -> Session | None:
        return self.cookie.decode(request.cookies.get(self.cookie.name), self.now())

    def render(
        self, request: Request, name: str, context: dict[str, Any], *, status: int = 200, session: Session | None = None
    ) -> HTMLResponse:
        notice = request.query_params.get("notice")
        base = {
            "mode": self.mode,
            "session": session if session is not None else self.session_of(request),
            "notice": NOTICES.get(notice or ""),
            "path": request.url.path,
        }
        return self.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)

    def fragment(self, name: str, context: dict[str, Any]) -> str:
        return self.templates.get_template(name).render(context)


def web_of(request: Request) -> Web:
    state: Web = request.app.state.web
    return state


WebDep = Annotated[Web, Depends(web_of)]


def logged_in(request: Request, web: WebDep) -> Session:
    session = web.session_of(request)
    if session is None:
        raise NotLoggedIn("Please log in.")
    return session


LoginDep = Annotated[Session, Depends(logged_in)]


async def read_form(request: Request, session: Session) -> FormData:
    form = await request.form()
    token = form.get("csrf")
    if not session.csrf_ok(token if isinstance(token, str) else None):
        raise CsrfRejected
    return form


def text_fields(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def see_other(path: str, notice: str | None = None) -> RedirectResponse:
    target = f"{path}{'&' if '?' in path else '?'}notice={notice}" if notice else path
    return RedirectResponse(target, status_code=303)


def safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no host, no protocol-relative ``//``)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/dashboard"


def build_router() -> APIRouter:
    router = APIRouter()

    # --- login ---------------------------------------------------------------------------------

    async def system_health(web: Web) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return await web.gateway.get("/system/health", token=None), None
        except GatewayError as exc:
            return None, exc.message

    async def login_page(
        request: Request, web: Web, *, error: str | None = None, username: str = "", status: int = 200
    ) -> HTMLResponse:
        health, health_error = await system_health(web)
        context = {
            "health": health,
            "health_error": health_error,
            "error": error,
            "username": username,
            "next": safe_next(request.query_params.get("next")),
        }
        return web.render(request, "login.html", context, status=status)

    @router.get("/", response_class=HTMLResponse, summary="Log in (with the system's status)")
    async def index(request: Request, web: WebDep) -> Response:
        if web.session_of(request) is not None:
            return see_other("/dashboard")
        return await login_page(request, web)

    @router.get("/login", response_class=HTMLResponse, summary="The login page")
    async def login_form(request: Request, web: WebDep) -> Response:
        return await login_page(request, web)

    @router.post("/login", response_class=HTMLResponse, summary="Log in with the gateway's password flow")
    async def login(request: Request, web: WebDep) -> Response:
        form = text_fields(await request.form())
        username, password = form.get("username", "").strip(), form.get("password", "")
        if not username or not password:
            return await login_page(request, web, error="Enter your username and password.", username=username,
                                    status=422)  # fmt: skip
        try:
            token = await web.gateway.call(
                "POST", "/auth/token", token=None, data={"username": username, "password": password}
            )
        except NotLoggedIn:
            return await login_page(request, web, error="Wrong username or password.", username=username, status=401)
        except GatewayError as exc:
            return await login_page(request, web, error=exc.message, username=username, status=exc.status)
        session = new_session(token["access_token"], username, token.get("role", "viewer"), token["expires_in"],
                              web.now())  # fmt: skip
        response = see_other(safe_next(form.get("next")))
        web.cookie.set(response, session, web.now())
        log.info("web_interface.logged_in", user=username, role=session.role)
        return response

    @router.post("/logout", summary="Log out")
    async def logout(request: Request, web: WebDep) -> Response:
        response = see_other("/login", "logged_out")
        web.cookie.clear(response)
        return response

    @router.get("/status", response_class=HTMLResponse, summary="Every service's readiness")
    async def status(request: Request, web: WebDep) -> Response:
        health, error = await system_health(web)
        return web.render(request, "status.html", {"health": health, "error": error})

    # --- dashboard -----------------------------------------------------------------------------

    def dashboard_context(board: views.Dashboard, session: Session) -> dict[str, Any]:
        return {"board": board, "session": session}

    @router.get("/dashboard", response_class=HTMLResponse, summary="The dashboard")
    async def dashboard(request: Request, web: WebDep, session: LoginDep) -> Response:
        board = await views.dashboard(web.gateway, session)
        context = {**dashboard_context(board, session), "charts": board.charts()}
        return web.render(request, "dashboard.html", context, session=session)

    @router.post("/dashboard/kill-switch", summary="Engage or release the kill switch (admin)")
    async def kill_switch(request: Request, web: WebDep, session: LoginDep) -> Response:
        form = text_fields(await read_form(request, session))
        engage = form.get("engaged") == "true"
        reason = form.get("reason", "").strip() or ("stopped from the dashboard" if engage else "released")
        body = {"engaged": engage, "reason": reason[:500], "cancel_open_orders": bool(form.get("cancel_open_orders"))}
        await web.gateway.call("POST", "/trade/kill-switch", token=session.token, json=body)
        log.info("web_interface.kill_switch", user=session.username, engaged=engage)
        return see_other("/dashboard", "kill_engaged" if engage else "kill_released")

    # --- training ------------------------------------------------------------------------------

    async def training_page(
        request: Request, web: Web, session: Session, values: dict[str, str], errors: dict[str, str], status: int = 200
    ) -> HTMLResponse:
        models = await views.panel(web.gateway.get("/model/models", token=session.token))
        jobs = await asyncio.gather(
            *(views.panel(web.gateway.get(f"/model/status/{j}", token=session.token)) for j in session.recent_jobs)
        )
        context = {
            "fields": forms.TRAINING_FIELDS,
            "values": values,
            "errors": errors,
            "quick": forms.QUICK_PRESET,
            "models": models,
            "jobs": [j.data for j in jobs if j.data],
        }
        return web.render(request, "training.html", context, status=status, session=session)

    @router.get("/training", response_class=HTMLResponse, summary="Start a training job; the model registry")
    async def training(request: Request, web: WebDep, session: LoginDep) -> Response:
        values = forms.training_defaults(web.settings.training_data_path)
        return await training_page(request, web, session, values, {})

    @router.post("/training", response_class=HTMLResponse, summary="Start a training job")
    async def start_training(request: Request, web: WebDep, session: LoginDep) -> Response:
        values = text_fields(await read_form(request, session))
        try:
            config = forms.training_config(values)
            accepted = await web.gateway.call("POST", "/model/train", token=session.token, json=config)
        except forms.FormErrors as exc:
            return await training_page(request, web, session, values, exc.errors, status=422)
        except Invalid as exc:
            errors = exc.field_errors() or {"_": exc.message}
            return await training_page(request, web, session, values, errors, status=422)
        job_id = str(accepted["job_id"])
        response = see_other(f"/training/jobs/{job_id}", "job_started")
        web.cookie.set(response, session.with_job(job_id), web.now())
        log.info("web_interface.training_started", user=session.username, job_id=job_id)
        return response

    @router.get("/training/jobs/{job_id}", response_class=HTMLResponse, summary="A training job: progress and report")
    async def job(request: Request, job_id: uuid.UUID, web: WebDep, session: LoginDep) -> Response:
        view = await views.job_view(web.gateway, session, str(job_id))
        context = {"view": view, "curves": view.curves(), "strategies": views.STRATEGIES,
                   "metrics": views.REPORT_METRICS}  # fmt: skip
        return web.render(request, "job.html", context, session=session)

    @router.post("/training/models/{model_id}/promote", summary="Promote a model (admin)")
    async def promote(request: Request, model_id: uuid.UUID, web: WebDep, session: LoginDep) -> Response:
        form = text_fields(await read_form(request, session))
        await web.gateway.call("POST", f"/model/models/{model_id}/promote", token=session.token)
        log.info("web_interface.model_promoted", user=session.username, model_id=str(model_id))
        return see_other(safe_next(form.get("back") or "/training"), "promoted")

    # --- trades --------------------------------------------------------------------------------

    def history_params(
        symbol: str | None, side: str | None, status: str | None, since: str | None, until: str | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The gateway's query for the trade filters (dates are KST days), and the filters as shown."""
        params: dict[str, Any] = {}
        shown = {"symbol": (symbol or "").strip().upper(), "side": side or "", "status": status or "",
                 "since": since or "", "until": until or ""}  # fmt: skip
        if shown["symbol"]:
            params["symbol"] = shown["symbol"]
        if side in ("buy", "sell"):
            params["side"] = side
        if status in ORDER_STATUSES:
            params["status"] = status
        for name, value, offset in (("since", since, 0), ("until", until, 1)):
            if value:
                try:
                    day = date.fromisoformat(value) + timedelta(days=offset)
                except ValueError:
                    continue
                params[name] = datetime(day.year, day.month, day.day, tzinfo=KST).isoformat()
        return params, shown

    @router.get("/trades", response_class=HTMLResponse, summary="Orders and fills, with filters")
    async def trades(
        request: Request,
        web: WebDep,
        session: LoginDep,
        symbol: str | None = None,
        side: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    ) -> Response:
        params, shown = history_params(symbol, side, status, since, until)
        limit = 50
        history = await views.panel(
            web.gateway.get("/trade/history", token=session.token,
                            params={**params, "limit": limit, "offset": (page - 1) * limit})
        )  # fmt: skip
        query = urlencode({k: v for k, v in shown.items() if v})
        context = {"history": history, "filters": shown, "statuses": ORDER_STATUSES, "page": page, "limit": limit,
                   "query": query}  # fmt: skip
        return web.render(request, "trades.html", context, session=session)

    @router.get("/trades.csv", summary="The filtered orders as CSV")
    async def trades_csv(
        web: WebDep,
        session: LoginDep,
        symbol: str | None = None,
        side: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Response:
        params, _ = history_params(symbol, side, status, since, until)
        columns = ("created_at", "trading_day", "symbol", "side", "order_type", "quantity", "limit_price", "status",
                   "filled_quantity", "average_fill_price", "filled_value", "commission", "tax", "source",
                   "reject_reason", "id")  # fmt: skip
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        offset = 0
        while offset < CSV_MAX_ROWS:
            page = await web.gateway.get("/trade/history", token=session.token,
                                         params={**params, "limit": 500, "offset": offset})  # fmt: skip
            for item in page["items"]:
                writer.writerow(["" if item.get(c) is None else item.get(c) for c in columns])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        name = f"trades-{datetime.now(KST):%Y%m%d-%H%M%S}.csv"
        return Response(
            out.getvalue().encode("utf-8-sig"),  # the BOM lets spreadsheet apps read Korean text
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment; filename={quote(name)}"},
        )

    @router.get("/trades/{order_id}", response_class=HTMLResponse, summary="One order with its fills and events")
    async def order(request: Request, order_id: uuid.UUID, web: WebDep, session: LoginDep) -> Response:
        detail = await web.gateway.get(f"/trade/status/{order_id}", token=session.token)
        return web.render(request, "order.html", {"detail": detail}, session=session)

    # --- logs ----------------------------------------------------------------------------------

    @router.get("/logs", response_class=HTMLResponse, summary="Live log tail")
    async def logs(
        request: Request,
        web: WebDep,
        session: LoginDep,
        level: str | None = None,
        service: str | None = None,
    ) -> Response:
        params = log_params(level, service, 0)
        page = await views.panel(web.gateway.get("/dashboard/logs", token=session.token, params=params))
        context = {"page": page, "level": params.get("level", ""), "service": params.get("service", ""),
                   "levels": LOG_LEVELS, "services": LOG_SERVICES}  # fmt: skip
        return web.render(request, "logs.html", context, session=session)

    # --- settings ------------------------------------------------------------------------------

    async def settings_page(
        request: Request,
        web: Web,
        session: Session,
        form: forms.SettingsForm | None,
        errors: dict[str, str],
        *,
        status: int = 200,
    ) -> HTMLResponse:
        current = await web.gateway.get("/dashboard/settings", token=session.token)
        shown = form or forms.settings_form(current)
        if not shown.schedules or any(s.get("job") for s in shown.schedules[-1:]):
            shown.schedules.append({"job": "", "at": "", "days": list(forms.WEEKDAYS[:5]), "enabled": True})
        context = {
            "current": current,
            "form": shown,
            "errors": errors,
            "risk_fields": forms.RISK_FIELDS,
            "jobs": forms.JOBS,
            "weekdays": forms.WEEKDAYS,
            "notify_events": forms.NOTIFY_EVENTS,
        }
        return web.render(request, "settings.html", context, status=status, session=session)

    @router.get("/settings", response_class=HTMLResponse, summary="Risk limits, watchlist, schedules, notifications")
    async def settings(request: Request, web: WebDep, session: LoginDep) -> Response:
        return await settings_page(request, web, session, None, {})

    @router.post("/settings", response_class=HTMLResponse, summary="Save the settings (admin)")
    async def save_settings(request: Request, web: WebDep, session: LoginDep) -> Response:
        raw = await read_form(request, session)
        values = text_fields(raw)
        lists = {k: [v for v in raw.getlist(k) if isinstance(v, str)] for k in raw if k.endswith((".days", ".events"))}
        try:
            document = forms.settings_document(values, lists)
            await web.gateway.call("PUT", "/dashboard/settings", token=session.token, json=document)
        except forms.FormErrors as exc:
            return await settings_page(request, web, session, resubmitted(exc.document, values), exc.errors,
                                       status=422)  # fmt: skip
        except Invalid as exc:
            errors = exc.field_errors() or {"_": exc.message}
            return await settings_page(request, web, session, resubmitted(document, values), errors, status=422)
        log.info("web_interface.settings_saved", user=session.username)
        return see_other("/settings", "settings_saved")

    # --- live updates --------------------------------------------------------------------------

    @router.get("/events", summary="Live updates for the page (server-sent events)")
    async def events(
        request: Request,
        web: WebDep,
        stream: Annotated[str, Query(pattern="^(dashboard|job|logs)$")],
        job: uuid.UUID | None = None,
        level: str | None = None,
        service: str | None = None,
        after: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        session = web.session_of(request)
        if session is None:
            return Response('{"error": "unauthorized", "message": "log in again"}', status_code=401,
                            media_type="application/json")  # fmt: skip
        if web.live_streams >= web.settings.live_max_streams:
            return Response('{"error": "busy", "message": "too many live pages open"}', status_code=503,
                            media_type="application/json", headers={"Retry-After": "10"})  # fmt: skip
        if stream == "dashboard":
            producer = dashboard_producer(web, session)
        elif stream == "job" and job is not None:
            producer = job_producer(web, session, str(job))
        elif stream == "logs":
            producer = logs_producer(web, session, log_params(level, service, after))
        else:
            return Response('{"error": "invalid_input", "message": "job needs a job id"}', status_code=422,
                            media_type="application/json")  # fmt: skip
        return StreamingResponse(
            live(request, web, producer),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


def resubmitted(document: dict[str, Any], values: dict[str, str]) -> forms.SettingsForm:
    """The settings form as the user sent it, to show again next to the errors."""
    shown = forms.settings_form(document)
    for key in ("watchlist", "notifications.telegram_chat_id", *(f.name for f in forms.RISK_FIELDS)):
        shown.values[key] = values.get(key, "")
    return shown


def log_params(level: str | None, service: str | None, after: int) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": 200}
    if level in LOG_LEVELS:
        params["level"] = level
    if service in LOG_SERVICES:
        params["service"] = service
    if after:
        params["after"] = after
    return params


Producer = Callable[[], Awaitable[tuple[str, dict[str, Any]] | None]]


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


async def live(request: Request, web: Web, producer: Producer) -> AsyncIterator[str]:
    """One client's stream: ask the gateway every interval, until the client leaves, the job ends,
    the session ends, or the stream's lifetime is up (the browser then reconnects by itself)."""
    web.live_streams += 1
    deadline = time.monotonic() + web.settings.live_stream_seconds
    try:
        yield "retry: 2000\n\n"
        while time.monotonic() < deadline and not await request.is_disconnected():
            try:
                produced = await producer()
            except NotLoggedIn:
                yield sse("expired", {"message": "Your session has ended; please log in again."})
                return
            except GatewayError as exc:
                yield sse("problem", {"message": exc.message})
            else:
                if produced is not None:
                    event, data = produced
                    yield sse(event, data)
                    if event == "done":
                        return
            await asyncio.sleep(web.settings.live_interval_seconds)
    finally:
        web.live_streams -= 1


def dashboard_producer(web: Web, session: Session) -> Producer:
    async def produce() -> tuple[str, dict[str, Any]]:
        board = await views.dashboard(web.gateway, session)
        context = {"board": board, "session": session}
        html = {
            "kpis": web.fragment("partials/kpis.html", context),
            "positions": web.fragment("partials/positions.html", context),
            "orders": web.fragment("partials/orders.html", context),
            "kill-switch": web.fragment("partials/kill_switch.html", context),
            "regime": web.fragment("partials/regime.html", context),
        }
        return "dashboard", {"html": html, "charts": board.charts(), "at": datetime.now(KST).isoformat()}

    return produce


def job_producer(web: Web, session: Session, job_id: str) -> Producer:
    async def produce() -> tuple[str, dict[str, Any]]:
        view = await views.job_view(web.gateway, session, job_id)
        html = {"job-progress": web.fragment("partials/job_progress.html", {"view": view})}
        return ("done" if view.finished else "job"), {"html": html, "curves": view.curves(),
                                                      "status": view.job.get("status")}  # fmt: skip

    return produce


def logs_producer(web: Web, session: Session, params: dict[str, Any]) -> Producer:
    state = {"after": int(params.pop("after", 0))}

    async def produce() -> tuple[str, dict[str, Any]] | None:
        page = await web.gateway.get("/dashboard/logs", token=session.token, params={**params, "after": state["after"]})
        state["after"] = int(page.get("last_id", state["after"]))
        if not page["events"]:
            return None
        rows = web.fragment("partials/log_rows.html", {"events": page["events"]})
        return "logs", {"rows": rows, "last_id": state["after"]}

    return produce


__all__ = ["CsrfRejected", "GatewayUnreachable", "NotPermitted", "Web", "build_router"]
