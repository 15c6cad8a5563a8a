"""Shared helpers of the benchmarks in ``scripts/bench/``: machine facts, private databases,
service processes, /proc memory readings and the report in ``docs/benchmarks.md``.

The report has a summary table at the top (one row per figure, replaced in place by the run
that measured it) and dated sections below, newest first within each ``## section``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "benchmarks.md"
BIN = Path(sys.executable).parent
DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
SUMMARY_START = "<!-- summary:start -->"
SUMMARY_END = "<!-- summary:end -->"
SUMMARY_HEADER = (
    "| figure | result | reference (same run) | ratio | goal | status | command | measured |",
    "|---|---|---|---|---|---|---|---|",
)
# The summary table lists the figures in the order, whichever benchmark ran last.
SUMMARY_ORDER = (
    "ingest ticks/s end to end",
    "gateway (API key) req/s",
    "gateway (API key) added latency",
    "gateway (JWT) req/s",
    "gateway (JWT) added latency",
    "tick → order accepted, all-in-one shape (SQLite)",
    "tick → order accepted, all-in-one shape (PostgreSQL)",
    "tick → order accepted, distributed",
    "tick → order acknowledged to the trader, distributed",
    "A3C-LSTM training env-steps/s",
    "indicator time vs TA-Lib",
    "policy backtest bars/s",
    "all-in-one cold start",
    "all-in-one peak RSS at rest",
    "peak RSS per service, distributed, at rest",
    "peak RSS per service, distributed, under ingest",
)


def database_server() -> str:
    return os.environ.get("TRADEBOT_TEST_DATABASE_URL", DEFAULT_DATABASE)


def amqp_url() -> str:
    return os.environ.get("TRADEBOT_TEST_AMQP_URL", DEFAULT_AMQP)


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs, {memory:.1f} GiB RAM, {platform.platform()}, Python {platform.python_version()}"


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# -- PostgreSQL ---------------------------------------------------------------------------------


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(server: str, prefix: str = "tradebot_bench_") -> str:
    """A new empty database on ``server``; returns its SQLAlchemy URL."""
    name = unique(prefix)
    conn = await asyncpg.connect(dsn(server))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{server.rpartition('/')[0]}/{name}"


async def drop_database(server: str, url: str) -> None:
    conn = await asyncpg.connect(dsn(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
    finally:
        await conn.close()


# -- RabbitMQ -----------------------------------------------------------------------------------


async def delete_bus_objects(amqp: str, prefix: str, exchange: str) -> None:
    """Delete every queue whose name starts with ``prefix`` and the ``exchange`` (a run's own)."""
    import aio_pika

    names: list[str] = []
    with contextlib.suppress(OSError, TimeoutError):
        listing = await asyncio.create_subprocess_exec(
            "rabbitmqctl", "-q", "list_queues", "name", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        output, _ = await asyncio.wait_for(listing.communicate(), 30)
        names = [line.strip() for line in output.decode().splitlines() if line.strip().startswith(prefix)]
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()


# -- processes ----------------------------------------------------------------------------------


@dataclass
class ServiceProcess:
    """A console script started in its own process group, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left after ``timeout``."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def start_process(
    name: str, command: Sequence[str], env: Mapping[str, str], url: str, log_dir: Path, drop: Sequence[str] = ()
) -> ServiceProcess:
    """Start ``command`` with this environment plus ``env`` (less the ``drop`` variables)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    inherited = {k: v for k, v in os.environ.items() if k not in drop}
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 — our own console scripts
            list(command),
            env={**inherited, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServiceProcess(name, process, url, log_path)


async def wait_http_ok(url: str, process: subprocess.Popen[bytes] | None, timeout: float) -> float:
    """Poll ``url`` until it answers 200; returns the seconds it took. Fails if the process exits."""
    started = time.perf_counter()
    deadline = started + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if process is not None and process.poll() is not None:
                raise SystemExit(f"process exited with {process.returncode} before {url} answered")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return time.perf_counter() - started
            await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not answer 200 within {timeout:.0f} s")


@contextlib.contextmanager
def stopping(processes: list[ServiceProcess]) -> Iterator[list[ServiceProcess]]:
    """Stop every process in the list (reverse start order) when the block ends, however it ends."""
    try:
        yield processes
    finally:
        for service in reversed(processes):
            service.stop()


# -- memory -------------------------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


def rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The kernel's high-water mark of the process's resident set (VmHWM)."""
    return _status_kib(pid, "VmHWM")


def group_pids(pgid: int) -> list[int]:
    """Every live process in process group ``pgid`` (a service and any children it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
    return pids


def bare_fastapi_rss_kib() -> int:
    """RSS of a bare ``python -c "import fastapi"`` process: the reference for service memory."""
    code = "import fastapi, sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)  # noqa: S603
    try:
        assert process.stdout is not None
        process.stdout.readline()
        return peak_rss_kib(process.pid)
    finally:
        process.kill()
        process.wait(timeout=10)


# -- report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the summary table."""

    name: str
    result: str
    reference: str
    ratio: str
    goal: str
    met: bool | None  # None: no goal, reported for information
    command: str

    def row(self, stamp: str) -> str:
        status = "—" if self.met is None else ("met" if self.met else "**NOT met**")
        cells = (self.name, self.result, self.reference, self.ratio, self.goal, status, f"`{self.command}`", stamp)
        return "| " + " | ".join(cells) + " |"


def now_stamp() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def _read_report() -> str:
    return REPORT.read_text(encoding="utf-8") if REPORT.exists() else "# Benchmarks\n"


def update_summary(figures: Sequence[Figure], order: Sequence[str] = SUMMARY_ORDER) -> None:
    """Replace (or add) the rows of ``figures`` in the summary table, keyed by figure name.

    Rows are shown in ``order``; names not in it follow, in the order they were first added.
    """
    text = _read_report()
    stamp = f"{now_stamp()}, {load_average()}"
    rows: dict[str, str] = {}
    if SUMMARY_START in text and SUMMARY_END in text:
        head, _, rest = text.partition(SUMMARY_START)
        table, _, tail = rest.partition(SUMMARY_END)
        for line in table.splitlines():
            if line.startswith("| ") and line not in SUMMARY_HEADER:
                rows[line.split(" | ", 1)[0][2:]] = line
    else:
        title, _, body = text.partition("\n")
        head, tail = f"{title}\n\n", f"\n\n{body.lstrip(chr(10))}"
    for figure in figures:
        rows[figure.name] = figure.row(stamp)
    ranked = sorted(rows, key=lambda name: order.index(name) if name in order else len(order))
    table = "\n".join([*SUMMARY_HEADER, *(rows[name] for name in ranked)])
    REPORT.write_text(f"{head}{SUMMARY_START}\n{table}\n{SUMMARY_END}{tail}", encoding="utf-8")


def _insert_under(heading: str, entry: str) -> None:
    """Put ``entry`` first under ``heading`` (the heading is added at the end when missing)."""
    text = _read_report()
    if heading not in text:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n"
    head, _, tail = text.partition(heading)
    REPORT.write_text(f"{head}{heading}\n\n{entry}\n{tail.lstrip(chr(10))}".rstrip("\n") + "\n", encoding="utf-8")


def write_section(section: str, command: str, lines: Sequence[str], setting: str = "") -> None:
    """Add a dated entry at the top of ``## section``."""
    machine_line = f"Machine: {machine()}; {load_average()} (1/5 min) at the end of the run."
    entry = "\n".join(
        [f"### {now_stamp()} — `{command}`", "", machine_line + (f" {setting}" if setting else ""), "", *lines, ""]
    )
    _insert_under(f"## {section}", entry)


def record_run(command: str, benchmarks: str, seconds: int, failed: str = "") -> None:
    """One line under ``## runs of scripts/bench.sh``: how long the whole command took."""
    names = ", ".join(part.strip() for part in benchmarks.split(",") if part.strip())
    line = f"- {now_stamp()}: `{command}` took **{seconds} s** ({names}); {load_average()} at the end"
    if failed.strip():
        line += f"; **failed: {failed.strip()}**"
    _insert_under("## runs of scripts/bench.sh", line)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Record the wall time of one scripts/bench.sh run.")
    parser.add_argument("--command", required=True)
    parser.add_argument("--benchmarks", required=True, help="comma-separated 'name N s' entries")
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--failed", default="")
    arguments = parser.parse_args()
    record_run(arguments.command, arguments.benchmarks, arguments.seconds, arguments.failed)
