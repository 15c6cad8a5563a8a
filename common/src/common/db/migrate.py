"""Bring a database to the newest schema: ``await migrate(url)`` or the ``tradebot-migrate`` command.

On PostgreSQL the whole upgrade runs in one transaction that first takes an advisory lock, so
replicas starting at the same moment queue up: the first migrates, the others then find the
schema at head and do nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from common.errors import Operational, TradebotError
from common.settings import RuntimeSettings

from .engine import create_engine, ping, redact_url

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Fixed, so that every replica of every service contends for the same lock.
MIGRATION_LOCK_KEY = 0x7472_6164_6562_6F74  # "tradebot" in ASCII

AlembicAction = Callable[[Config], None]

# Partitions and BRIN indexes are storage details chosen by the migration, not model changes.
_STORAGE_DETAIL = re.compile(r"^(ticks|bars|features)_(y\d{4}|default)(_.*)?$|_ts_brin$")


def alembic_config() -> Config:
    """An Alembic ``Config`` for the packaged migrations (for ``alembic.command`` calls)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def include_in_autogenerate(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic ``include_object`` hook: compare models to the schema, minus the storage layout."""
    return not (reflected and compare_to is None and name is not None and _STORAGE_DETAIL.search(name))


def head_revisions() -> frozenset[str]:
    """The newest revisions shipped with this code.

    Services add their tables in migrations of their own, branching from the revision that was
    newest when they were written; several heads are normal and ``migrate`` applies them all.
    """
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if not heads:
        raise Operational(f"no migrations found in {MIGRATIONS_DIR}")
    return frozenset(heads)


def current_revisions_sync(conn: Connection) -> frozenset[str]:
    """The revisions the database is at (empty before the first migration)."""
    return frozenset(MigrationContext.configure(conn).get_current_heads())


async def migrate(url: str, revision: str = "heads") -> None:
    """Upgrade the database at ``url`` to ``revision``; a no-op when it is already there.

    Raises ``Unavailable`` if the database cannot be reached and ``Operational`` if a
    migration fails (its transaction is rolled back, on SQLite too).
    """
    await _run(url, lambda config: command.upgrade(config, revision))


async def downgrade(url: str, revision: str) -> None:
    """Downgrade to ``revision`` (``"base"`` drops every table); for operations and tests."""
    await _run(url, lambda config: command.downgrade(config, revision))


def _apply(conn: Connection, action: AlembicAction) -> tuple[frozenset[str], frozenset[str]]:
    before = current_revisions_sync(conn)
    config = alembic_config()
    config.attributes["connection"] = conn
    action(config)
    return before, current_revisions_sync(conn)


async def _run(url: str, action: AlembicAction) -> None:
    engine = create_engine(url)
    where = redact_url(engine.url)
    try:
        await ping(engine)
        try:
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Held until this transaction commits or rolls back, i.e. across the whole upgrade.
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                before, after = await conn.run_sync(_apply, action)
        except (SQLAlchemyError, CommandError) as e:
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            raise Operational(f"migration of {where} failed: {reason}") from e
    finally:
        await engine.dispose()
    if before == after:
        log.info("db.migrate_noop", url=where, revisions=sorted(after))
    else:
        log.info("db.migrated", url=where, from_revisions=sorted(before), to_revisions=sorted(after))


def main(argv: Sequence[str] | None = None) -> int:
    """``tradebot-migrate [--url URL]``: upgrade to every head; the URL defaults to TRADEBOT_DATABASE_URL."""
    parser = argparse.ArgumentParser(prog="tradebot-migrate", description="Upgrade the trading-bot database schema.")
    parser.add_argument("--url", help="database URL (default: the TRADEBOT_DATABASE_URL environment variable)")
    parser.add_argument("--revision", default="heads", help="target revision (default: heads, all of them)")
    args = parser.parse_args(argv)
    if not structlog.is_configured():
        # Keep stdout clean for scripts; diagnostics go to stderr.
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    url: str | None = args.url
    if url is None:
        try:
            settings = RuntimeSettings()
        except ValidationError as e:
            problems = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors(include_input=False)]
            log.error("db.migrate_failed", error="invalid_settings", problems=problems)
            return 2
        if "database_url" in settings.model_fields_set:
            url = settings.database_url.get_secret_value()
    if not url:
        log.error("db.migrate_failed", error="no_database_url", message="pass --url or set TRADEBOT_DATABASE_URL")
        return 2

    try:
        asyncio.run(migrate(url, args.revision))
    except TradebotError as e:
        log.error("db.migrate_failed", error=e.code, message=_scrub(e.message, url))
        return 1
    except Exception as e:
        # The command's last line of defence: report without a traceback that could echo the URL.
        log.error("db.migrate_failed", error=type(e).__name__, message=_scrub(str(e), url))
        return 1
    return 0


def _scrub(message: str, url: str) -> str:
    """``message`` with the URL's password (and the raw URL) masked."""
    message = message.replace(url, redact_url(url))
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    if password:
        message = message.replace(str(password), "***")
    return message
