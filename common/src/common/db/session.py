"""The request owns the transaction: one session per request, committed or rolled back here.

Routes and services never call ``commit()``; they take ``SessionDep`` and let this dependency
commit when the endpoint returns and roll back when it raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
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
