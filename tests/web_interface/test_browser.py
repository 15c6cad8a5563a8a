"""The dashboard in headless Chromium against a running all-in-one instance with the KIS simulator.

One ``tradebot-allinone`` (free ports, a temp data dir, a bootstrap admin, a synthetic CSV market
for training) serves the module; Playwright drives Debian's ``/usr/bin/chromium``. The tests run
in order, like a user's first session: log in, read the dashboard, toggle the kill switch, train
a small model and promote it, look at trades and logs, edit a setting. Each page's screenshot is
saved under ``test-artifacts/screenshots/`` (the user manual uses them).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT, unavailable
from tests.model_trainer.conftest import write_market

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
ADMIN, PASSWORD = "admin", "correct-horse-battery-staple"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# A weekday morning in the simulator's market, so that orders fill during the session.
MARKET_START = "2026-03-04T10:00:00+09:00"

pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Platform:
    web: str
    gateway: str
    market: Path
    process: subprocess.Popen[str]


def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def seed_activity(gateway: str) -> None:
    """What a trading day leaves behind: a watchlist, daily bars, a few filled orders."""
    api = httpx.Client(base_url=f"{gateway}/api/v1", timeout=20)
    token = api.post("/auth/token", data={"username": ADMIN, "password": PASSWORD}).json()["access_token"]
    api.headers["Authorization"] = f"Bearer {token}"
    wait_for(lambda: api.get("/trade/pnl").status_code == 200, "the trader's first reconciliation")
    current = api.get("/dashboard/settings").json()
    document = {"risk": current["risk"], "watchlist": ["005930", "000660"], "schedules": current["schedules"],
                "notifications": {"events": current["notifications"]["events"]}}  # fmt: skip
    assert api.put("/dashboard/settings", json=document).status_code == 200
    backfill = {"kind": "backfill", "symbols": ["005930", "000660"], "start": "2026-01-05", "end": "2026-03-03"}
    job = api.post("/data/collect", json=backfill).json()
    for symbol, quantity in (("005930", 20), ("000660", 10)):
        assert api.post("/trade/buy", json={"symbol": symbol, "quantity": quantity}).status_code == 200
    wait_for(lambda: len(api.get("/trade/positions").json()) == 2, "the buys to fill")
    assert api.post("/trade/sell", json={"symbol": "005930", "quantity": 5}).status_code == 200
    held = lambda: {p["symbol"]: p["quantity"] for p in api.get("/trade/positions").json()}  # noqa: E731
    wait_for(lambda: held().get("005930") == 15, "the sell to fill")
    wait_for(lambda: api.get(f"/data/collect/{job['id']}").json()["status"] == "completed", "the backfill", 90)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("allinone")
    market = write_market(data / "market")
    gateway_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        **{f"KIS_SIM_{name}_PORT": str(free_port()) for name in ("REAL_REST", "REAL_WS", "PAPER_REST", "PAPER_WS")},
        "KIS_SIM_START": MARKET_START,
        "TRADEBOT_ALLINONE_GATEWAY_PORT": str(gateway_port),
        "TRADEBOT_ALLINONE_WEB_PORT": str(web_port),
        "TRADEBOT_ALLINONE_DATA_DIR": str(data),
        "TRADEBOT_LOG_JSON": "true",
        "API_GATEWAY_BOOTSTRAP_ADMIN_USERNAME": ADMIN,
        "API_GATEWAY_BOOTSTRAP_ADMIN_PASSWORD": PASSWORD,
        "MODEL_TRAINER_DATA_DIRS": f'["{market}"]',
        "MODEL_TRAINER_ARTIFACT_ROOT": str(data / "models"),
        "TRADER_RECONCILE_INTERVAL_SECONDS": "5",
        "WEB_INTERFACE_TRAINING_DATA_PATH": str(market),
        "WEB_INTERFACE_LIVE_INTERVAL_SECONDS": "1",
    }
    env.pop("TRADEBOT_DATABASE_URL", None)
    log = (data / "allinone.log").open("w")
    script = Path(sys.executable).parent / "tradebot-allinone"
    process = subprocess.Popen([str(script)], env=env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=data)
    web, gateway = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{gateway_port}"
    try:

        def up() -> bool:
            assert process.poll() is None, (data / "allinone.log").read_text()[-3000:]
            return all(httpx.get(f"{url}/healthz", timeout=2).status_code == 200 for url in (web, gateway))

        wait_for(up, "the all-in-one instance")
        seed_activity(gateway)
        yield Platform(web=web, gateway=gateway, market=market, process=process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not found: scripts/install_tools.sh installs Debian's chromium (as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (requirements-dev.txt)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )  # fmt: skip
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser: Any, platform: Platform) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP, base_url=platform.web, locale="ko-KR", timezone_id="Asia/Seoul")
    context.set_default_timeout(20_000)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # the confirmations of dangerous buttons
    yield tab
    context.close()


def shoot(page: Any, name: str, *, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def test_login_refuses_a_wrong_password_then_opens_the_dashboard(page: Any) -> None:
    page.goto("/")
    assert page.locator("#services tr[data-service='trader']").is_visible()
    shoot(page, "01-login")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert "Wrong username or password." in page.locator("#login-error").inner_text()
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")


def test_dashboard_is_populated_from_the_platform_and_updates_live(page: Any) -> None:
    page.goto("/dashboard")
    assert re.fullmatch(r"₩[0-9]{1,3}(,[0-9]{3})+", page.locator("#kpi-equity").inner_text())
    positions = page.locator("#positions-table tbody tr")
    assert positions.count() == 2
    assert "005930" in page.locator("#positions-table").inner_text()
    assert page.locator("#orders-table tbody tr").count() >= 3
    assert page.locator("#kpi-winrate").inner_text() != "–"  # one sell closed a trade
    assert page.locator("#kill-state").get_attribute("data-engaged") == "false"
    assert page.locator("#equity-chart").bounding_box()["height"] > 100
    page.wait_for_selector("#live-state[data-state=live]")  # the SSE stream delivered an update
    page.wait_for_function("document.getElementById('live-state').textContent.includes('updated')")
    shoot(page, "02-dashboard")


def test_dashboard_fits_a_phone(page: Any) -> None:
    page.set_viewport_size(PHONE)
    try:
        page.goto("/dashboard")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, "the page scrolls sideways on a phone"
        shoot(page, "03-dashboard-phone")
    finally:
        page.set_viewport_size(LAPTOP)


def test_admin_toggles_the_kill_switch(page: Any) -> None:
    page.goto("/dashboard")
    page.fill("#kill-switch input[name=reason]", "browser test: stop trading")
    page.click("#kill-button")
    page.wait_for_url("**/dashboard?notice=kill_engaged")
    state = page.locator("#kill-state")
    assert state.get_attribute("data-engaged") == "true" and "ENGAGED" in state.inner_text()
    shoot(page, "04-kill-switch-engaged")
    page.click("#kill-button")
    page.wait_for_url("**/dashboard?notice=kill_released")
    assert page.locator("#kill-state").get_attribute("data-engaged") == "false"


def test_a_small_training_job_starts_shows_progress_and_its_model_is_promoted(page: Any) -> None:
    page.goto("/training")
    page.click("#quick-preset")
    for name, value in (("split.train_end", "2010-12-31"), ("split.val_start", "2011-01-01"),
                        ("split.val_end", "2011-12-31"), ("split.test_start", "2012-01-01"),
                        ("split.test_end", "2013-12-31")):  # fmt: skip
        page.fill(f"input[name='{name}']", value)
    shoot(page, "05-training-form")
    page.fill("input[name='a3c.lr']", "5")  # the trainer's 422 shows next to the field; nothing started
    page.click("#start-training")
    assert "less than or equal to 1" in page.locator("[data-field='a3c.lr'] .field-error").inner_text()
    page.fill("input[name='a3c.lr']", "0.001")
    page.click("#start-training")
    page.wait_for_url(re.compile(r".*/training/jobs/[0-9a-f-]{36}.*"))
    # Progress moves on the page itself (live updates), before the job ends.
    page.wait_for_function(
        "parseInt((document.getElementById('job-steps')||{}).textContent||'0') > 0"
        " || (document.getElementById('job-status')||{}).textContent === 'succeeded'",
        timeout=90_000,
    )
    shoot(page, "06-training-progress")
    page.wait_for_selector("#report", timeout=90_000)  # the page reloads with the report when the job ends
    assert page.locator("#job-status").inner_text() == "succeeded"
    assert "buy and hold" in page.locator("#report").inner_text()
    page.locator("#report").scroll_into_view_if_needed()
    shoot(page, "07-training-report")
    promote = page.locator("#job-models button", has_text="Promote").first
    if promote.count():
        promote.click()
        page.wait_for_url("**notice=promoted")
    page.goto("/dashboard")
    regime = page.locator("#regime").inner_text()
    assert "regime" in regime and "No model promoted yet." not in regime


def test_trades_filter_and_export_csv(page: Any) -> None:
    page.goto("/trades")
    assert page.locator("#trades-table tbody tr").count() >= 3
    page.fill("input[name=symbol]", "000660")
    page.click("#trade-filters button[type=submit]")
    rows = page.locator("#trades-table tbody tr")
    assert rows.count() == 1 and "000660" in rows.first.inner_text()
    shoot(page, "08-trades")
    with page.expect_download() as download:
        page.click("#csv-export")
    path = download.value.path()
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("created_at,trading_day,symbol") and len(lines) == 2 and ",000660," in lines[1]


def test_logs_tail_with_filters(page: Any) -> None:
    page.goto("/logs")
    assert page.locator("#log-table tbody tr").count() > 0
    page.select_option("#log-filters select[name=service]", "trader")
    page.click("#log-filters button[type=submit]")
    page.wait_for_url("**service=trader**")
    components = page.locator("#log-table tbody tr td:nth-child(3)").all_inner_texts()
    assert components and set(components) == {"trader"}
    page.wait_for_selector("#live-state[data-state=live]")
    shoot(page, "09-logs")


def test_settings_show_validation_messages_and_save(page: Any) -> None:
    page.goto("/settings")
    page.fill("input[name='risk.max_order_value_krw']", "999,999,999")  # above the gross exposure
    page.click("#save-settings")
    problem = page.locator("#form-problem")
    assert problem.is_visible()
    assert "cannot exceed max_gross_exposure_krw" in page.locator("form#settings-form").inner_text()
    shoot(page, "10-settings-invalid")
    page.fill("input[name='risk.max_order_value_krw']", "4,000,000")
    page.fill("input[name=watchlist]", "005930, 000660, 035420")
    page.click("#save-settings")
    page.wait_for_url("**/settings?notice=settings_saved")
    assert page.locator("input[name='risk.max_order_value_krw']").input_value() == "4,000,000"
    assert page.locator("input[name=watchlist]").input_value() == "005930, 000660, 035420"
    shoot(page, "11-settings", full_page=True)


def test_logout_ends_the_session(page: Any) -> None:
    page.click("header form.who button")
    page.wait_for_url("**/login?notice=logged_out")
    page.goto("/dashboard")
    page.wait_for_url("**/login?next=/dashboard**")
