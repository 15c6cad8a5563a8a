"""Fixtures of the reliability suite: private PostgreSQL and RabbitMQ servers a test may stop.

Each server starts once per run (session scope) and is torn down at the end even when a test
failed; a test that left one stopped gets it started again by the next test's fixture. Without
the server binaries the tests are skipped locally and fail on CI (``tests/conftest.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import run_sync, unavailable
from tests.reliability.servers import (
    PrivatePostgres,
    PrivateRabbitMQ,
    amqp_answers,
    postgres_problem,
    rabbitmq_problem,
)


async def _execute(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this run's own, on a free loopback port."""
    problem = postgres_problem()
    if problem is not None:
        unavailable(problem)
    server = PrivatePostgres()
    try:
        started = time.monotonic()
        server.init()
        server.start()
        print(f"private PostgreSQL on :{server.port} ready in {time.monotonic() - started:.1f} s")
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of this run's own, on free loopback ports."""
    problem = rabbitmq_problem()
    if problem is not None:
        unavailable(problem)
    server = PrivateRabbitMQ()
    try:
        started = time.monotonic()
        server.start()
        print(f"private RabbitMQ {server.node} on :{server.port} ready in {time.monotonic() - started:.1f} s")
        yield server
    finally:
        server.destroy()


@pytest.fixture
def live_postgres(private_postgres: PrivatePostgres) -> PrivatePostgres:
    """The private PostgreSQL, running (a test before may have left it stopped)."""
    if not private_postgres.running:
        private_postgres.start()
    return private_postgres


@pytest.fixture
def live_rabbitmq(private_rabbitmq: PrivateRabbitMQ) -> PrivateRabbitMQ:
    """The private RabbitMQ node, running and answering."""
    if not (private_rabbitmq.running and amqp_answers(private_rabbitmq.port)):
        private_rabbitmq.stop()
        private_rabbitmq.start()
    return private_rabbitmq


@pytest.fixture
def private_database_url(live_postgres: PrivatePostgres) -> Iterator[str]:
    """A fresh, empty database on the private PostgreSQL, dropped afterwards."""
    name = f"tradebot_reliability_{uuid.uuid4().hex[:12]}"
    run_sync(_execute(live_postgres.server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield live_postgres.url(name)
    finally:
        if not live_postgres.running:
            live_postgres.start()
        run_sync(_execute(live_postgres.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
