"""Async engines for the two supported databases: PostgreSQL (asyncpg) and SQLite (aiosqlite).

Every service builds its engine here so that connection behaviour is the same everywhere:
SQLite gets WAL, foreign keys, a busy timeout and real transactions; PostgreSQL gets
pre-ping and a bounded connect timeout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from common.errors import Operational, Unavailable

log = structlog.get_logger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 15_000
POSTGRES_CONNECT_TIMEOUT_S = 10.0
# SQLSTATEs meaning the server is not there for us right now (connection exceptions, shutting
# down, starting up, out of connection slots), as opposed to a statement that failed.
UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")

_DRIVER_ALIASES = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def normalise_url(url: str | URL) -> URL:
    """The URL with its async driver: ``postgresql://`` becomes ``postgresql+asyncpg://``.

    Raises ``Operational`` for anything but PostgreSQL and SQLite; the message never
    contains the password.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise Operational("database URL cannot be parsed", detail={"url": redact_url(str(url))}) from e
    driver = _DRIVER_ALIASES.get(parsed.drivername)
    if driver is None:
        raise Operational(
            f"unsupported database driver {parsed.drivername!r}: use postgresql+asyncpg:// or sqlite+aiosqlite://"
        )
    return parsed.set(drivername=driver)


def redact_url(url: str | URL) -> str:
    """The URL as text with its password masked, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable: mask whatever sits between "user:" and "@" rather than echo a secret.
        text_url = str(url)
        scheme, sep, rest = text_url.partition("://")
        credentials, at, host = rest.rpartition("@")
        if not sep or not at:
            return text_url
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"


def create_engine(url: str | URL, **kw: Any) -> AsyncEngine:
    """An ``AsyncEngine`` for a PostgreSQL or SQLite URL; ``kw`` goes to ``create_async_engine``."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        _ensure_sqlite_directory(parsed)
        engine = create_async_engine(parsed, **kw)
        _install_sqlite_pragmas(engine)
        return engine
    kw.setdefault("pool_pre_ping", True)
    connect_args = dict(kw.pop("connect_args", {}))
    connect_args.setdefault("timeout", POSTGRES_CONNECT_TIMEOUT_S)
    return create_async_engine(parsed, connect_args=connect_args, **kw)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine, *, within_seconds: float = 5.0) -> None:
    """Round-trip ``SELECT 1`` within ``within_seconds``; raises ``Unavailable`` when the database cannot be reached."""
    try:
        async with asyncio.timeout(within_seconds):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as e:
        where = redact_url(engine.url)
        log.warning("db.ping_failed", url=where, error=type(e).__name__)
        raise Unavailable(
            f"database {where} unreachable: {type(e).__name__}", detail={"error": type(e).__name__}
        ) from e


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached (down, restarting, connection lost,
    no free connection) rather than that the work itself failed; retrying later can succeed."""
    if isinstance(error, PoolTimeoutError) or (isinstance(error, DBAPIError) and error.connection_invalidated):
        return True
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OSError, TimeoutError)):  # refused, reset, connect timeout
            return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(UNREACHABLE_SQLSTATES):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) and id(orig) not in seen else current.__cause__
    return False


def _ensure_sqlite_directory(url: URL) -> None:
    # The all-in-one default lives in ./var/; SQLite would refuse a file in a missing folder.
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The sqlite3 driver's legacy mode neither begins transactions for SELECT nor for DDL;
        # we take over BEGIN (below) so that rollback and migrations are really atomic.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")
