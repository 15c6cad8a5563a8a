"""Benchmark: what the api-gateway adds to a routed read, next to calling the service directly.

A ``tradebot-data-processor`` process (not consuming: no tick load) and a
``tradebot-api-gateway`` process routing ``/api/v1/indicator/*`` to it, both on 127.0.0.1 with a
private PostgreSQL database holding 120 daily bars of one symbol, and their own RabbitMQ
exchange and queue prefix. The request is the dashboard's chart read
``GET /indicator/ma?symbol=005930&window=20`` (120 points, one SELECT plus TA-Lib), sent
byte-for-byte the same way to the service and to the gateway (which also authenticates: an API
key, looked up in the database, or a JWT, verified in memory).

- latency: one request at a time on one keep-alive connection, alternating blocks of 100
  direct / gateway (API key) / gateway (JWT) requests; the gateway's added p50 and p99 are the
  differences of the percentiles;
- throughput: ``CONCURRENCY`` keep-alive connections each sending its next request as soon as
  the previous answered, for a fixed time per side, sides alternated; req/s through the gateway
  as a ratio of req/s direct.

The load generator is a minimal HTTP/1.1 client on asyncio streams in this process (far cheaper
per request than a general client), sharing the machine's cores with the servers and PostgreSQL.

    .venv/bin/python scripts/bench/gateway.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from datetime import time as dtime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import benchlib
import httpx
from benchlib import Figure, ServiceProcess

from common.clock import kst_datetime
from common.db import migrate

SECTION = "api-gateway overhead"
SYMBOL = "005930"
BARS = 120
SERVICE_PATH = f"/indicator/ma?symbol={SYMBOL}&window=20&kind=sma&timeframe=1d"
GATEWAY_PATH = f"/api/v1{SERVICE_PATH}"
CONCURRENCY = 8
LATENCY_BLOCK = 100
MAX_REQUESTS_PER_RUN = 200_000  # a bound on any throughput run, whatever the duration


@dataclass(frozen=True)
class Target:
    """One way of sending the request: where to, and the exact bytes."""

    name: str
    port: int
    request: bytes


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)


def get_request(port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Connection:
    """One keep-alive HTTP/1.1 connection; ``send`` returns the status and the body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        body = await self._chunked() if chunked else await self.reader.readexactly(length)
        return status, body

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # the empty trailer
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size + 2))
            parts[-1] = parts[-1][:-2]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def expect_ok(target: Target, status: int, body: bytes) -> None:
    if status != 200:
        raise SystemExit(f"{target.name}: HTTP {status}: {body[:300]!r}")


async def latency_block(target: Target, count: int) -> list[float]:
    connection = await Connection.open(target.port)
    try:
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            status, body = await connection.send(target.request)
            latencies.append((time.perf_counter() - started) * 1000)
            expect_ok(target, status, body)
        return latencies
    finally:
        await connection.close()


async def throughput_run(target: Target, seconds: float) -> float:
    """Requests per second with ``CONCURRENCY`` connections busy for ``seconds``."""
    connections = [await Connection.open(target.port) for _ in range(CONCURRENCY)]
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(connection: Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline and done < MAX_REQUESTS_PER_RUN:
            status, body = await connection.send(target.request)
            expect_ok(target, status, body)
            done += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    return done / (time.perf_counter() - started)


async def seed_bars(url: str) -> None:
    """``BARS`` daily bars of ``SYMBOL`` (a gentle random walk), what the chart reads."""
    first = kst_datetime(date(2024, 1, 2), dtime(9, 0))
    rows = []
    price = 70_000
    for day in range(BARS):
        price += (day * 37 % 11 - 5) * 100
        ts = first + timedelta(days=day)
        rows.append((SYMBOL, "1d", ts, price, price + 500, price - 500, price, 1_000_000, None))
    conn = await asyncpg.connect(benchlib.dsn(url))
    try:
        await conn.copy_records_to_table(
            "bars",
            records=rows,
            columns=["symbol", "timeframe", "ts", "open", "high", "low", "close", "volume", "value"],
        )
    finally:
        await conn.close()


def shared_env(url: str, exchange: str) -> dict[str, str]:
    return {
        "TRADEBOT_DATABASE_URL": url,
        "TRADEBOT_AMQP_URL": benchlib.amqp_url(),
        "TRADEBOT_BUS_EXCHANGE": exchange,
        "TRADEBOT_BUS_QUEUE_PREFIX": f"{exchange}.",
        "TRADEBOT_MIGRATE_ON_START": "false",
        "TRADEBOT_LOG_JSON": "true",
    }


def start_services(url: str, exchange: str, log_dir: Path, admin_password: str) -> list[ServiceProcess]:
    processor_port, gateway_port, nowhere = benchlib.free_port(), benchlib.free_port(), benchlib.free_port()
    processor_url = f"http://127.0.0.1:{processor_port}"
    # Only the data-processor is routed to; every other service points at a closed port.
    upstreams = {name: f"http://127.0.0.1:{nowhere}" for name in ("data-collector", "model-trainer", "inferencer")}
    upstreams |= {"trader": f"http://127.0.0.1:{nowhere}", "data-processor": processor_url}
    processor_env = {
        **shared_env(url, exchange),
        "DATA_PROCESSOR_HOST": "127.0.0.1",
        "DATA_PROCESSOR_PORT": str(processor_port),
        "DATA_PROCESSOR_CONSUME": "false",
    }
    gateway_env = {
        **shared_env(url, exchange),
        "API_GATEWAY_HOST": "127.0.0.1",
        "API_GATEWAY_PORT": str(gateway_port),
        "API_GATEWAY_UPSTREAMS": json.dumps(upstreams),
        "API_GATEWAY_JWT_SECRET": secrets.token_hex(32),
        "API_GATEWAY_BOOTSTRAP_ADMIN_USERNAME": "bench",
        "API_GATEWAY_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
        # The benchmark is one client: rate limits would measure the limiter, not the gateway.
        "API_GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000",
        "API_GATEWAY_RATE_LIMIT_BURST": "100000",
    }
    return [
        benchlib.start_process(
            "data-processor", [str(benchlib.BIN / "tradebot-data-processor")], processor_env, processor_url, log_dir
        ),
        benchlib.start_process(
            "api-gateway",
            [str(benchlib.BIN / "tradebot-api-gateway")],
            gateway_env,
            f"http://127.0.0.1:{gateway_port}",
            log_dir,
        ),
    ]


async def credentials(gateway_url: str, admin_password: str) -> tuple[str, str]:
    """(viewer API key, admin JWT) from the gateway's own endpoints."""
    async with httpx.AsyncClient(base_url=f"{gateway_url}/api/v1", timeout=10) as client:
        token = await client.post("/auth/token", data={"username": "bench", "password": admin_password})
        token.raise_for_status()
        jwt = str(token.json()["access_token"])
        key = await client.post(
            "/admin/keys", json={"name": "bench", "role": "viewer"}, headers={"Authorization": f"Bearer {jwt}"}
        )
        key.raise_for_status()
        return str(key.json()["key"]), jwt


def targets(processor: ServiceProcess, gateway: ServiceProcess, api_key: str, jwt: str) -> list[Target]:
    processor_port = int(processor.url.rpartition(":")[2])
    gateway_port = int(gateway.url.rpartition(":")[2])
    return [
        Target("direct", processor_port, get_request(processor_port, SERVICE_PATH, {})),
        Target(
            "gateway (API key)",
            gateway_port,
            get_request(gateway_port, GATEWAY_PATH, {"Authorization": f"Bearer {api_key}"}),
        ),
        Target(
            "gateway (JWT)", gateway_port, get_request(gateway_port, GATEWAY_PATH, {"Authorization": f"Bearer {jwt}"})
        ),
    ]


async def same_answer(sides: Sequence[Target]) -> None:
    """Every side answers 200 with the same JSON (the gateway forwards, it does not reshape)."""
    bodies = []
    for target in sides:
        connection = await Connection.open(target.port)
        try:
            status, body = await connection.send(target.request)
        finally:
            await connection.close()
        expect_ok(target, status, body)
        bodies.append(json.loads(body))
    if any(body != bodies[0] for body in bodies[1:]):
        raise SystemExit("the gateway's answer differs from the service's")
    if len(bodies[0]["points"]) != BARS:
        raise SystemExit(f"expected {BARS} points, got {len(bodies[0]['points'])}")


async def measure(sides: Sequence[Target], rounds: int, seconds: float) -> dict[str, Samples]:
    samples = {target.name: Samples() for target in sides}
    for target in sides:  # warm-up: connections, caches, the JIT-less but lazy parts of each path
        await latency_block(target, 50)
    for _ in range(rounds):
        for target in sides:
            samples[target.name].latencies_ms += await latency_block(target, LATENCY_BLOCK)
    for _ in range(max(2, rounds // 2)):
        for target in sides:
            samples[target.name].rates.append(await throughput_run(target, seconds))
    return samples


async def run(quick: bool, workdir: Path) -> tuple[dict[str, Samples], int]:
    server = benchlib.database_server()
    url = await benchlib.create_database(server, "tradebot_bench_gw_")
    exchange = benchlib.unique("bench-gw-")
    password = secrets.token_urlsafe(16)
    try:
        await migrate(url)
        await seed_bars(url)
        with benchlib.stopping(start_services(url, exchange, workdir / "logs", password)) as (processor, gateway):
            for service in (processor, gateway):
                await benchlib.wait_http_ok(f"{service.url}/readyz", service.process, 60)
            api_key, jwt = await credentials(gateway.url, password)
            sides = targets(processor, gateway, api_key, jwt)
            await same_answer(sides)
            rounds, seconds = (3, 2.0) if quick else (10, 6.0)
            return await measure(sides, rounds, seconds), rounds
    finally:
        await benchlib.drop_database(server, url)
        await benchlib.delete_bus_objects(benchlib.amqp_url(), f"{exchange}.", exchange)


def figures(samples: dict[str, Samples], command: str) -> tuple[list[Figure], list[str]]:
    direct = samples["direct"]
    d50, d99 = benchlib.percentile(direct.latencies_ms, 50), benchlib.percentile(direct.latencies_ms, 99)
    d_rate = statistics.median(direct.rates)
    found: list[Figure] = []
    lines = [
        f"- direct (reference): p50 **{d50:.2f} ms**, p99 {d99:.2f} ms over {len(direct.latencies_ms):,} sequential"
        f" requests; **{d_rate:,.0f} req/s** with {CONCURRENCY} connections (runs: "
        + ", ".join(f"{r:,.0f}" for r in direct.rates)
        + ")"
    ]
    for name in ("gateway (API key)", "gateway (JWT)"):
        side = samples[name]
        g50, g99 = benchlib.percentile(side.latencies_ms, 50), benchlib.percentile(side.latencies_ms, 99)
        rate = statistics.median(side.rates)
        ratio = rate / d_rate
        added50, added99 = g50 - d50, g99 - d99
        rate_met, latency_met = ratio >= 0.40, added50 <= 1.0
        lines.append(
            f"- {name}: p50 **{g50:.2f} ms** (added **{added50:+.2f} ms**, goal ≤ 1 ms: "
            f"{'met' if latency_met else 'NOT met'}), p99 {g99:.2f} ms (added {added99:+.2f} ms); "
            f"**{rate:,.0f} req/s** → **{ratio:.2f}×** of direct (goal ≥ 0.40×: {'met' if rate_met else 'NOT met'};"
            " runs: " + ", ".join(f"{r:,.0f}" for r in side.rates) + ")"
        )
        found += [
            Figure(
                f"{name} req/s",
                f"{rate:,.0f} req/s",
                f"direct {d_rate:,.0f} req/s",
                f"{ratio:.2f}×",
                "≥ 0.40× of direct",
                rate_met,
                command,
            ),
            Figure(
                f"{name} added latency",
                f"p50 +{added50:.2f} ms, p99 +{added99:.2f} ms",
                f"direct p50 {d50:.2f} ms, p99 {d99:.2f} ms",
                f"{g50 / d50:.2f}× (p50)",
                "p50 added ≤ 1 ms",
                latency_met,
                command,
            ),
        ]
    return found, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--command", default="scripts/bench/gateway.py")
    parser.add_argument("--no-record", action="store_true")
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="bench-gw-") as tmp:
        samples, rounds = asyncio.run(run(args.quick, Path(tmp)))
    found, lines = figures(samples, args.command)
    for line in lines:
        print(line)
    if not args.no_record:
        setting = (
            f"`GET {SERVICE_PATH}` ({BARS} points) on a data-processor process, direct or through an api-gateway"
            f" process, PostgreSQL; {rounds} rounds of {LATENCY_BLOCK} sequential requests per side for latency,"
            f" {CONCURRENCY} connections for throughput."
        )
        benchlib.write_section(SECTION, args.command, lines, setting)
        benchlib.update_summary(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
