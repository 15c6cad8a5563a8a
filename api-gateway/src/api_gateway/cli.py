"""``tradebot-gateway-admin``: manage the gateway's users and API keys from a shell.

Works on the database of ``TRADEBOT_DATABASE_URL`` (or ``--url``), migrating it first. A new
API key is printed once; passwords are read from a prompt or, with ``--password-stdin``, from
the first line of standard input.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from api_gateway.accounts import Accounts
from api_gateway.roles import Role
from api_gateway.security import TokenIssuer
from common.clock import SystemClock
from common.db import create_engine, create_sessionmaker, migrate
from common.errors import TradebotError
from common.settings import RuntimeSettings

Command = Callable[[Accounts, AsyncSession, argparse.Namespace], Awaitable[list[str]]]


class _Stderr:
    """Whatever ``sys.stderr`` is at the moment of writing (it may be replaced after configuring)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


async def _create_user(accounts: Accounts, session: AsyncSession, args: argparse.Namespace) -> list[str]:
    user = await accounts.create_user(session, args.username, args.password, Role(args.role))
    return [f"created user {user.username} ({user.role})"]


async def _list_users(accounts: Accounts, session: AsyncSession, args: argparse.Namespace) -> list[str]:
    lines = ["username\trole\tdisabled\tcreated_at\tlast_login_at"]
    for user in await accounts.list_users(session):
        lines.append(
            f"{user.username}\t{user.role}\t{str(user.disabled).lower()}\t{_when(user.created_at)}\t"
            f"{_when(user.last_login_at)}"
        )
    return lines


async def _disable_user(accounts: Accounts, session: AsyncSession, args: argparse.Namespace) -> list[str]:
    user = await accounts.disable_user(session, args.username)
    return [f"disabled user {user.username}"]


async def _create_key(accounts: Accounts, session: AsyncSession, args: argparse.Namespace) -> list[str]:
    created = await accounts.create_key(session, args.name, Role(args.role), "cli")
    return [
        f"created API key {created.record.id} ({created.record.role}); it is shown only now:",
        created.plaintext,
    ]


async def _list_keys(accounts: Accounts, session: AsyncSession, args: argparse.Namespace) -> list[str]:
    lines = ["id\tname\tprefix\trole\tcreated_at\tlast_used_at\trevoked_at"]
    for key in await accounts.list_keys(session, include_revoked=args.all):
        lines.append(
            f"{key.id}\t{key.name}\ttb_{key.prefix}_…\t{key.role}\t{_when(key.created_at)}\t"
            f"{_when(key.last_used_at)}\t{_when(key.revoked_at)}"
        )
    return lines


async def _revoke_key(accounts: Accounts, session: AsyncSession, args: argparse.Namespace) -> list[str]:
    key = await accounts.revoke_key(session, args.key_id)
    return [f"revoked API key {key.id} ({key.name})"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradebot-gateway-admin", description="Manage API users and keys.")
    parser.add_argument("--url", help="database URL (default: the TRADEBOT_DATABASE_URL environment variable)")
    commands = parser.add_subparsers(dest="command", required=True)
    roles = [r.value for r in Role]

    create_user = commands.add_parser("create-user", help="create a user who logs in with a password")
    create_user.add_argument("username")
    create_user.add_argument("--role", choices=roles, default=Role.VIEWER.value)
    create_user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    create_user.set_defaults(run=_create_user)

    commands.add_parser("list-users", help="list users").set_defaults(run=_list_users)

    disable_user = commands.add_parser("disable-user", help="disable a user")
    disable_user.add_argument("username")
    disable_user.set_defaults(run=_disable_user)

    create_key = commands.add_parser("create-key", help="create an API key (printed once)")
    create_key.add_argument("name")
    create_key.add_argument("--role", choices=roles, default=Role.VIEWER.value)
    create_key.set_defaults(run=_create_key)

    list_keys = commands.add_parser("list-keys", help="list API keys (never the keys themselves)")
    list_keys.add_argument("--all", action="store_true", help="include revoked keys")
    list_keys.set_defaults(run=_list_keys)

    revoke_key = commands.add_parser("revoke-key", help="revoke an API key")
    revoke_key.add_argument("key_id", type=uuid.UUID)
    revoke_key.set_defaults(run=_revoke_key)
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise ValueError("the passwords differ")
    return password


async def _run(url: str, command: Command, args: argparse.Namespace) -> list[str]:
    await migrate(url)
    engine = create_engine(url)
    try:
        # The CLI issues no tokens; the issuer is only there to complete Accounts.
        accounts = Accounts(SystemClock(), TokenIssuer("unused-by-the-cli", "cli", timedelta(minutes=1)))
        async with create_sessionmaker(engine)() as session:
            lines = await command(accounts, session, args)
            await session.commit()
        return lines
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not structlog.is_configured():
        # Keep stdout for results; diagnostics go to stderr.
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(_Stderr()))  # type: ignore[arg-type]
    url: str | None = args.url
    if url is None:
        try:
            url = RuntimeSettings().database_url.get_secret_value()
        except ValueError as exc:
            sys.stderr.write(f"tradebot-gateway-admin: invalid settings: {exc}\n")
            return 2
    if args.command == "create-user":
        try:
            args.password = _read_password(args.password_stdin)
        except ValueError as exc:
            sys.stderr.write(f"tradebot-gateway-admin: {exc}\n")
            return 2
    try:
        lines = asyncio.run(_run(url, args.run, args))
    except TradebotError as exc:
        sys.stderr.write(f"tradebot-gateway-admin: {exc.message}\n")
        return 1
    except SQLAlchemyError as exc:
        sys.stderr.write(f"tradebot-gateway-admin: database error: {type(exc).__name__}\n")
        return 1
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
