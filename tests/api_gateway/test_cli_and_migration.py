"""``tradebot-gateway-admin`` and migration 0007 (SQLite and PostgreSQL, up and down)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

import api_gateway.models  # noqa: F401 — registers the gateway's tables on Base
from api_gateway.cli import main
from common.db import Base, create_engine, downgrade, migrate

GATEWAY_TABLES = {"api_users", "api_keys", "settings"}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_creates_lists_and_revokes(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRADEBOT_DATABASE_URL", sqlite_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-password\n"))

    assert run(["create-user", "ops", "--role", "admin", "--password-stdin"], capsys)[:2] == (
        0,
        "created user ops (admin)\n",
    )
    code, out, _ = run(["create-key", "grafana", "--role", "viewer"], capsys)
    assert code == 0
    key_id = out.split()[3]
    plaintext = out.strip().splitlines()[-1]
    assert plaintext.startswith("tb_")

    code, out, _ = run(["list-keys"], capsys)
    assert code == 0 and "grafana" in out and plaintext not in out
    assert run(["revoke-key", key_id], capsys)[0] == 0
    assert "grafana" not in run(["list-keys"], capsys)[1]
    assert "grafana" in run(["list-keys", "--all"], capsys)[1]
    code, out, _ = run(["list-users"], capsys)
    assert "ops\tadmin\tfalse" in out


def test_cli_errors_are_one_line_and_nonzero(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRADEBOT_DATABASE_URL", sqlite_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))

    code, _, err = run(["create-user", "ops", "--password-stdin"], capsys)
    assert code == 1 and "password must be" in err
    code, _, err = run(["revoke-key", "00000000-0000-0000-0000-000000000000"], capsys)
    assert code == 1 and "no API key" in err
    code, _, err = run(["disable-user", "ghost"], capsys)
    assert code == 1 and "no user ghost" in err


async def test_migration_0007_upgrades_matches_the_models_and_downgrades(database_url: str, tmp_path: Path) -> None:
    await migrate(database_url)
    engine = create_engine(database_url)
    try:

        def tables(conn: Connection) -> set[str]:
            return set(inspect(conn).get_table_names())

        def differences(conn: Connection) -> list[object]:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = list(compare_metadata(context, Base.metadata))
            return [d for d in diffs if any(t in str(d) for t in GATEWAY_TABLES)]

        async with engine.connect() as conn:
            assert await conn.run_sync(tables) >= GATEWAY_TABLES
            assert await conn.run_sync(differences) == []
        await downgrade(database_url, "0007@-1")
        async with engine.connect() as conn:
            assert not GATEWAY_TABLES & await conn.run_sync(tables)
        await migrate(database_url)
        async with engine.connect() as conn:
            assert await conn.run_sync(tables) >= GATEWAY_TABLES
    finally:
        await engine.dispose()
