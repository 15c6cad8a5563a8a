"""Shared fixtures: the real PostgreSQL and RabbitMQ of the integration tier.

Each test that needs PostgreSQL gets a database of its own; each RabbitMQ test uses its own
exchange and queue names. When a server is unreachable the test is skipped with the reason —
except under ``CI=true``, where the integration tier is required and the test fails instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

ON_CI = os.environ.get("CI", "").lower() == "true"
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "krx-daily"

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def unavailable(reason: str) -> None:
    """Skip locally, fail on CI: the integration tier is required there."""
    if ON_CI:
        pytest.fail(f"required on CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _pg_server_url() -> str:
    return os.environ.get("TRADEBOT_TEST_DATABASE_URL", DEFAULT_PG)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_execute(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


_pg_problem: list[str] = []


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of the PostgreSQL server under test (a maintenance database on it)."""
    url = _pg_server_url()
    if not _pg_problem:
        try:
            run_sync(_pg_execute(url, "SELECT 1"))
            _pg_problem.append("")
        except Exception as exc:
            _pg_problem.append(f"PostgreSQL at {url.split('@')[-1]} unreachable: {type(exc).__name__}: {exc}")
    if _pg_problem[0]:
        unavailable(_pg_problem[0])
    return url


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"tradebot_test_{uuid.uuid4().hex[:12]}"
    run_sync(_pg_execute(postgres_server, f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        run_sync(_pg_execute(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tradebot.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


_amqp_problem: list[str] = []


@pytest.fixture(scope="session")
def amqp_url() -> str:
    url = os.environ.get("TRADEBOT_TEST_AMQP_URL", DEFAULT_AMQP)
    if not _amqp_problem:

        async def probe() -> None:
            import aio_pika

            connection = await aio_pika.connect(url, timeout=5)
            await connection.close()

        try:
            run_sync(probe())
            _amqp_problem.append("")
        except Exception as exc:
            _amqp_problem.append(f"RabbitMQ at {url.split('@')[-1]} unreachable: {type(exc).__name__}: {exc}")
    if _amqp_problem[0]:
        unavailable(_amqp_problem[0])
    return url


@pytest.fixture
def shared_data() -> Path:
    """The real KRX daily bars in ../shared/data/krx-daily (never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        unavailable(f"{SHARED_DATA} not found: the project's shared data folder sits beside the repository")
    return SHARED_DATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"postgres_server", "pg_url", "amqp_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in counts:
        for report in terminalreporter.stats.get(outcome, []):
            if report.when in ("call", "setup") and "integration" in report.keywords:
                if outcome == "passed" and report.when != "call":
                    continue
                counts[outcome] += 1
    terminalreporter.write_line(
        f"integration tier (real PostgreSQL/RabbitMQ): {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['skipped']} skipped"
    )
