"""Token sharing: file store (flock, 0600, across processes), kis_tokens table, invalidation rules."""

from __future__ import annotations

import asyncio
import itertools
import json
import stat
import sys
import threading
import time as systime
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from common.clock import FixedClock
from common.db.models import kis_token_key
from common.kis import DbTokenStore, FileTokenStore, KisSettings, MemoryTokenStore, StoredToken
from common.kis.auth import TokenManager
from common.kis.settings import token_key_id
from common.kis.tokens import TokenStore, kis_tokens_table

APPKEY = "PSVTtokentestappkey0123456789abcdef"
APPSECRET = "T" * 180
START = datetime(2026, 7, 10, 1, 0, tzinfo=UTC)


def settings_for(url: str = "http://kis.test", **overrides: Any) -> KisSettings:
    return KisSettings(
        domain="paper", paper_rest_url=url, appkey=SecretStr(APPKEY), appsecret=SecretStr(APPSECRET), **overrides
    )


class TokenServer:
    """Counts /oauth2/tokenP issuances (MockTransport handler)."""

    def __init__(self) -> None:
        self.issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/oauth2/tokenP"
        self.issued += 1
        return httpx.Response(
            200,
            json={
                "access_token": f"token-{self.issued}",
                "access_token_token_expired": "2026-07-11 10:00:00",
                "token_type": "Bearer",
                "expires_in": 86400,
            },
        )


def manager(store: TokenStore, server: TokenServer, clock: FixedClock) -> TokenManager:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return TokenManager(settings_for(), http, store, clock)


def test_key_id_matches_the_kis_tokens_model() -> None:
    assert token_key_id("paper", APPKEY) == kis_token_key("paper", APPKEY)
    assert settings_for().key_id == token_key_id("paper", APPKEY)
    assert APPKEY not in settings_for().key_id


async def test_two_file_stores_on_one_path_share_one_token(tmp_path: Path) -> None:
    clock, server = FixedClock(START), TokenServer()
    path = tmp_path / "cache" / "kis-tokens.json"
    first = manager(FileTokenStore(path), server, clock)
    second = manager(FileTokenStore(path), server, clock)
    tokens = await asyncio.gather(first.access_token(), second.access_token(), first.access_token())
    assert set(tokens) == {"token-1"}
    assert server.issued == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert list(data) == [settings_for().key_id]
    assert APPKEY not in path.read_text()
    # A restarted process reads the same file and does not issue again.
    restarted = manager(FileTokenStore(path), server, clock)
    assert await restarted.access_token() == "token-1"
    assert server.issued == 1


async def test_invalidation_keeps_a_token_another_process_already_replaced() -> None:
    clock, server, store = FixedClock(START), TokenServer(), MemoryTokenStore()
    a, b = manager(store, server, clock), manager(store, server, clock)
    stale = await a.access_token()
    clock.advance(timedelta(minutes=2))
    await b.invalidate(stale)
    fresh = await b.access_token()
    await a.invalidate(stale)  # a learns late that token-1 was bad: token-2 must survive
    assert await a.access_token() == fresh == "token-2"
    assert server.issued == 2


async def test_at_most_one_issuance_a_minute_even_when_tokens_are_rejected() -> None:
    clock, server, store = FixedClock(START), TokenServer(), MemoryTokenStore()
    tokens = manager(store, server, clock)
    issued_at: list[datetime] = []
    for _ in range(3):
        token = await tokens.access_token()
        issued_at.append(clock.now())
        await tokens.invalidate(token)
    assert server.issued == 3
    assert all(later - earlier >= timedelta(seconds=60) for earlier, later in itertools.pairwise(issued_at))


async def test_refresh_when_less_than_ten_minutes_remain() -> None:
    clock, server, store = FixedClock(START), TokenServer(), MemoryTokenStore()
    key_id = settings_for().key_id
    store.tokens[key_id] = StoredToken(
        key_id, "paper", "old-token", START + timedelta(minutes=9), START - timedelta(hours=23)
    )
    assert await manager(store, server, clock).access_token() == "token-1"
    store.tokens[key_id] = StoredToken(
        key_id, "paper", "kept", START + timedelta(minutes=11), START - timedelta(hours=23)
    )
    assert await manager(store, server, clock).access_token() == "kept"
    assert server.issued == 1


async def test_db_store_shares_one_token_between_engines(database_url: str) -> None:
    table = kis_tokens_table()
    engines = [create_async_engine(database_url), create_async_engine(database_url)]
    try:
        async with engines[0].begin() as conn:
            await conn.run_sync(lambda sync_conn: table.create(sync_conn, checkfirst=True))
        clock, server = FixedClock(START), TokenServer()
        first, second = (manager(DbTokenStore(engine), server, clock) for engine in engines)
        tokens = await asyncio.gather(first.access_token(), second.access_token())
        assert list(tokens) == ["token-1", "token-1"]
        assert server.issued == 1
        stored = await DbTokenStore(engines[1]).load(settings_for().key_id)
        assert stored is not None and stored.domain == "paper"
        assert stored.expires_at == datetime(2026, 7, 11, 1, 0, tzinfo=UTC)
        assert stored.issued_at == START
        clock.advance(timedelta(minutes=3))
        await second.invalidate("token-1")
        assert await second.access_token() == "token-2"
        # The other engine learns of the rejection from the gateway and picks up the replacement.
        await first.invalidate("token-1")
        assert await first.access_token() == "token-2"
        assert server.issued == 2
    finally:
        for engine in engines:
            await engine.dispose()


# --- several OS processes on one token file ---------------------------------------------------


@pytest.fixture
def slow_token_server() -> Iterator[tuple[str, list[float]]]:
    """A real HTTP /oauth2/tokenP that takes 0.3 s, recording each issuance."""
    issued: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            systime.sleep(0.3)
            issued.append(systime.time())
            body = json.dumps(
                {
                    "access_token": f"proc-token-{len(issued)}",
                    "access_token_token_expired": "2099-01-01 00:00:00",
                    "token_type": "Bearer",
                    "expires_in": 86400,
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", issued
    finally:
        server.shutdown()
        thread.join(5)


CHILD = """
import asyncio, sys
import httpx
from pydantic import SecretStr
from common.clock import SystemClock
from common.kis import FileTokenStore, KisSettings
from common.kis.auth import TokenManager

async def main() -> None:
    settings = KisSettings(domain="paper", paper_rest_url=sys.argv[1], appkey=SecretStr(sys.argv[3]),
                           appsecret=SecretStr(sys.argv[4]))
    async with httpx.AsyncClient() as http:
        tokens = TokenManager(settings, http, FileTokenStore(sys.argv[2]), SystemClock())
        sys.stdout.write(await tokens.access_token())

asyncio.run(main())
"""


async def test_processes_on_one_host_issue_once_through_the_file_lock(
    tmp_path: Path, slow_token_server: tuple[str, list[float]]
) -> None:
    url, issued = slow_token_server
    path = tmp_path / "kis-tokens.json"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            url,
            str(path),
            APPKEY,
            APPSECRET,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = [await proc.communicate() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err.decode()[-500:] for _, err in results]
    assert {out.decode().splitlines()[-1] for out, _ in results} == {"proc-token-1"}
    assert len(issued) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
