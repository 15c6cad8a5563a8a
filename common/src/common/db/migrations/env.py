"""Alembic environment, configured in code by ``common.db.migrate`` (no alembic.ini).

``migrate`` hands over an open connection in ``config.attributes["connection"]`` (it holds the
migration lock in that connection's transaction). Called any other way, a URL in
``config.attributes["url"]`` or the ``sqlalchemy.url`` option is used.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from common.db.engine import create_engine
from common.db.migrate import include_in_autogenerate
from common.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_with_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_in_autogenerate,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_with_connection)
    finally:
        await engine.dispose()


def run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported: the migration inspects the server")
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with_connection(connection)
        return
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: run through common.db.migrate or set sqlalchemy.url")
    asyncio.run(run_with_url(url))


run()
