"""Where access tokens live between processes: the ``TokenStore`` port and its adapters.

KIS sends the account owner a KakaoTalk message on every issuance and refuses more than one
new token a minute (kis-api.md §2.1), so every service and replica must share one token per
appkey. A store offers a plain ``load`` and an ``exclusive`` section that holds a lock other
processes respect while a token is (re)issued:

- ``FileTokenStore``: one JSON file (mode 0600) guarded by ``fcntl.flock`` on a sibling lock
  file, for the processes of one host.
- ``DbTokenStore``: the ``kis_tokens`` table, for every host; PostgreSQL advisory lock, or the
  row write lock on SQLite.
- ``MemoryTokenStore``: one process, for tests and dry runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.kis.errors import KisUnavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoredToken:
    """One access token as cached; ``issued_at`` is kept after invalidation for the issuance throttle."""

    key_id: str
    domain: str
    access_token: str = field(repr=False)
    expires_at: datetime
    issued_at: datetime

    def remaining_seconds(self, now: datetime) -> float:
        return (self.expires_at - now).total_seconds()

    def usable(self, now: datetime, margin_seconds: float = 0.0) -> bool:
        return bool(self.access_token) and self.remaining_seconds(now) > margin_seconds

    def expired_at(self, now: datetime) -> StoredToken:
        return replace(self, expires_at=min(self.expires_at, now))


class TokenTransaction(Protocol):
    """The store as seen from inside ``exclusive``: reads and writes under the lock."""

    async def load(self) -> StoredToken | None: ...

    async def save(self, token: StoredToken) -> None: ...


class TokenStore(Protocol):
    """Port: a token cache shared by every client of one appkey (see module docstring)."""

    async def load(self, key_id: str) -> StoredToken | None:
        """The cached token, without locking (may be stale by the time it is used)."""
        ...

    def exclusive(self, key_id: str) -> contextlib.AbstractAsyncContextManager[TokenTransaction]:
        """Hold the cross-process lock of ``key_id`` for the body of the ``async with``."""
        ...


def _aware(value: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; they were written as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# In memory


class _MemoryTransaction:
    def __init__(self, store: MemoryTokenStore, key_id: str) -> None:
        self._store, self._key_id = store, key_id

    async def load(self) -> StoredToken | None:
        return self._store.tokens.get(self._key_id)

    async def save(self, token: StoredToken) -> None:
        self._store.tokens[self._key_id] = token


class MemoryTokenStore:
    """Tokens in a dict; shares nothing beyond this object."""

    def __init__(self) -> None:
        self.tokens: dict[str, StoredToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self, key_id: str) -> StoredToken | None:
        return self.tokens.get(key_id)

    @contextlib.asynccontextmanager
    async def exclusive(self, key_id: str) -> AsyncIterator[TokenTransaction]:
        lock = self._locks.setdefault(key_id, asyncio.Lock())
        async with lock:
            yield _MemoryTransaction(self, key_id)


# ---------------------------------------------------------------------------------------------
# JSON file + flock


def _token_to_json(token: StoredToken) -> dict[str, str]:
    return {
        "domain": token.domain,
        "access_token": token.access_token,
        "expires_at": token.expires_at.isoformat(),
        "issued_at": token.issued_at.isoformat(),
    }


def _token_from_json(key_id: str, data: Any) -> StoredToken | None:
    if not isinstance(data, dict):
        return None
    try:
        return StoredToken(
            key_id=key_id,
            domain=str(data["domain"]),
            access_token=str(data["access_token"]),
            expires_at=_aware(datetime.fromisoformat(str(data["expires_at"]))),
            issued_at=_aware(datetime.fromisoformat(str(data["issued_at"]))),
        )
    except (KeyError, ValueError):
        return None


class _FileTransaction:
    def __init__(self, store: FileTokenStore, key_id: str) -> None:
        self._store, self._key_id = store, key_id

    async def load(self) -> StoredToken | None:
        return await self._store.load(self._key_id)

    async def save(self, token: StoredToken) -> None:
        await asyncio.to_thread(self._store._write_entry, self._key_id, _token_to_json(token))


class FileTokenStore:
    """A JSON file ``{key_id: {...}}`` shared by the processes of one host.

    Writes go to a temporary file that replaces the original, so readers without the lock
    never see half a file. Lock waits are real time (they are about other processes).
    """

    def __init__(self, path: Path | str, *, lock_timeout_seconds: float = 30.0, poll_seconds: float = 0.02) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_timeout = lock_timeout_seconds
        self._poll = poll_seconds

    def _read_all(self) -> dict[str, Any]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("kis.token_cache_corrupt", path=str(self.path))
            return {}
        return data if isinstance(data, dict) else {}

    def _write_entry(self, key_id: str, entry: dict[str, str]) -> None:
        data = self._read_all()
        data[key_id] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    async def load(self, key_id: str) -> StoredToken | None:
        data = await asyncio.to_thread(self._read_all)
        return _token_from_json(key_id, data.get(key_id))

    @contextlib.asynccontextmanager
    async def exclusive(self, key_id: str) -> AsyncIterator[TokenTransaction]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if loop.time() >= deadline:
                        raise KisUnavailable("timed out waiting for the KIS token cache lock") from None
                    await asyncio.sleep(self._poll)
            try:
                yield _FileTransaction(self, key_id)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# Database (kis_tokens)

_fallback_metadata = MetaData()
_fallback_table = Table(
    "kis_tokens",
    _fallback_metadata,
    Column("key_id", String(64), primary_key=True),
    Column("domain", String(8), nullable=False),
    Column("access_token", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)


def kis_tokens_table() -> Table:
    """The ``kis_tokens`` table of ``common.db.models`` when it exists, else an identical declaration."""
    try:
        models = importlib.import_module("common.db.models")
    except ImportError:
        return _fallback_table
    for holder in (models, getattr(models, "Base", None)):
        metadata = getattr(holder, "metadata", None)
        if isinstance(metadata, MetaData) and "kis_tokens" in metadata.tables:
            return metadata.tables["kis_tokens"]
    return _fallback_table


# In-process exclusion per (database, key); across processes see DbTokenStore.exclusive.
_DB_LOCKS: dict[tuple[str, str], asyncio.Lock] = {}


class _DbTransaction:
    def __init__(self, conn: AsyncConnection, table: Table, key_id: str) -> None:
        self._conn, self._table, self._key_id = conn, table, key_id

    async def load(self) -> StoredToken | None:
        return await _select_token(self._conn, self._table, self._key_id)

    async def save(self, token: StoredToken) -> None:
        values = {
            "domain": token.domain,
            "access_token": token.access_token,
            "expires_at": token.expires_at,
            "issued_at": token.issued_at,
        }
        table = self._table
        result = await self._conn.execute(update(table).where(table.c.key_id == self._key_id).values(**values))
        if result.rowcount == 0:
            await self._conn.execute(table.insert().values(key_id=self._key_id, **values))


async def _select_token(conn: AsyncConnection, table: Table, key_id: str) -> StoredToken | None:
    stmt = select(table.c.domain, table.c.access_token, table.c.expires_at, table.c.issued_at).where(
        table.c.key_id == key_id
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    return StoredToken(
        key_id=key_id,
        domain=str(row.domain),
        access_token=str(row.access_token),
        expires_at=_aware(row.expires_at),
        issued_at=_aware(row.issued_at),
    )


class DbTokenStore:
    """Tokens in the ``kis_tokens`` table, shared by every service and replica."""

    def __init__(self, engine: AsyncEngine, *, table: Table | None = None) -> None:
        self.engine = engine
        self.table = table if table is not None else kis_tokens_table()

    async def load(self, key_id: str) -> StoredToken | None:
        async with self.engine.connect() as conn:
            return await _select_token(conn, self.table, key_id)

    @contextlib.asynccontextmanager
    async def exclusive(self, key_id: str) -> AsyncIterator[TokenTransaction]:
        url = self.engine.url.render_as_string(hide_password=True)
        lock = _DB_LOCKS.setdefault((url, key_id), asyncio.Lock())
        async with lock, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                digest = hashlib.sha256(f"kis_tokens:{key_id}".encode()).digest()
                lock_id = int.from_bytes(digest[:8], "big", signed=True)
                await conn.execute(text("SELECT pg_advisory_xact_lock(:lock_id)"), {"lock_id": lock_id})
            else:
                # A write statement takes SQLite's database write lock until commit, even when it
                # matches no row, so other processes queue behind it.
                table = self.table
                await conn.execute(update(table).where(table.c.key_id == key_id).values(key_id=table.c.key_id))
            yield _DbTransaction(conn, self.table, key_id)
