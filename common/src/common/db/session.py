"""The request owns the transaction: one session per request, committed or rolled back here.

Routes and services never call ``commit()``; they take ``SessionDep`` and let this dependency
commit when the endpoint returns and roll back when it raises. Background work that reads and
then writes opens its transaction with ``write_transaction``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a session from ``request.app.state.sessionmaker``; commit on success, roll back on error."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


# scope="function": the commit happens before the response is sent, so a client that got a
# 2xx can read its write, and a failed commit becomes an error response instead of a lie.
# Dependencies that take SessionDep must therefore be function-scoped too.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


@contextlib.asynccontextmanager
async def write_transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A transaction that will write: on SQLite it takes the write lock *first*.

    In WAL mode a transaction that reads and then writes fails at once ("database is locked")
    when another connection committed in between — waiting cannot help it, and in all-in-one
    mode every service writes to the same file. Starting with a write (one that changes no row)
    makes it wait its turn (busy timeout) with a fresh snapshot instead.
    """
    async with sessionmaker.begin() as session:
        if session.get_bind().dialect.name == "sqlite":
            await session.execute(text("UPDATE processed_messages SET consumer = consumer WHERE 1 = 0"))
        yield session
