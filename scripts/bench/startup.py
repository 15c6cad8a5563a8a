"""Benchmark: all-in-one cold start to a ready dashboard, and the all-in-one process's memory.

Each repeat launches ``tradebot-allinone`` with a fresh temporary data directory (so the SQLite
database is created and migrated, and the KIS simulator and every service start from nothing)
on free loopback ports, and times it until the dashboard's login page answers 200. Then, after
a few seconds at rest, it reads the process's peak resident set (``VmHWM``) and current one
(``VmRSS``) from /proc. The reference for memory is a bare ``python -c "import fastapi"``
process started in the same run. The interpreter's byte-code caches are warm (the venv has been
used before): "cold" means a new data directory and new processes, not an empty page cache.

    .venv/bin/python scripts/bench/startup.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib
from benchlib import Figure

SECTION = "all-in-one cold start"
READY_TIMEOUT = 120.0
# Variables that would point the all-in-one process at another database or broker.
INHERITED_OVERRIDES = ("TRADEBOT_DATABASE_URL", "TRADEBOT_AMQP_URL", "TRADEBOT_MODE")


@dataclass(frozen=True)
class Start:
    seconds: float
    peak_kib: int
    rest_kib: int


def allinone_env(data_dir: Path, gateway_port: int, web_port: int) -> dict[str, str]:
    return {
        "TRADEBOT_ALLINONE_HOST": "127.0.0.1",
        "TRADEBOT_ALLINONE_DATA_DIR": str(data_dir),
        "TRADEBOT_ALLINONE_GATEWAY_PORT": str(gateway_port),
        "TRADEBOT_ALLINONE_WEB_PORT": str(web_port),
        # The simulator picks free ports too (its defaults may be taken by another run).
        "KIS_SIM_REAL_REST_PORT": "0",
        "KIS_SIM_REAL_WS_PORT": "0",
        "KIS_SIM_PAPER_REST_PORT": "0",
        "KIS_SIM_PAPER_WS_PORT": "0",
    }


def cold_start(workdir: Path, rest_seconds: float) -> Start:
    data_dir = workdir / "data"
    gateway_port, web_port = benchlib.free_port(), benchlib.free_port()
    env = allinone_env(data_dir, gateway_port, web_port)
    login = f"http://127.0.0.1:{web_port}/login"
    service = benchlib.start_process(
        "allinone", [str(benchlib.BIN / "tradebot-allinone")], env, login, workdir, drop=INHERITED_OVERRIDES
    )
    with benchlib.stopping([service]):
        started = time.perf_counter()
        try:
            asyncio.run(benchlib.wait_http_ok(login, service.process, READY_TIMEOUT))
        except SystemExit:
            sys.stderr.write(service.log_tail() + "\n")
            raise
        seconds = time.perf_counter() - started
        time.sleep(rest_seconds)
        pids = benchlib.group_pids(service.process.pid)
        return Start(
            seconds=seconds,
            peak_kib=benchlib.peak_rss_kib(service.process.pid),
            rest_kib=sum(benchlib.rss_kib(pid) for pid in pids),
        )


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def report(starts: list[Start], reference_kib: int, command: str) -> tuple[list[Figure], list[str]]:
    seconds = statistics.median(s.seconds for s in starts)
    peak = max(s.peak_kib for s in starts)
    rest = statistics.median(s.rest_kib for s in starts)
    met = seconds <= 15.0
    lines = [
        f"- cold start to the dashboard's login page answering 200: median **{seconds:.1f} s** of {len(starts)}"
        f" (runs: {', '.join(f'{s.seconds:.1f}' for s in starts)} s); goal ≤ 15 s: {'met' if met else 'NOT met'}",
        f"- all-in-one process at rest (every service, the simulator, SQLite): peak RSS **{mib(peak)}**, RSS after"
        f' the rest {mib(rest)}; a bare `python -c "import fastapi"` process (reference, same run)'
        f" {mib(reference_kib)} → **{peak / reference_kib:.1f}×**",
    ]
    figures = [
        Figure("all-in-one cold start", f"{seconds:.1f} s (median of {len(starts)})", "—", "—", "≤ 15 s", met, command),
        Figure(
            "all-in-one peak RSS at rest",
            mib(peak),
            f"bare `import fastapi` {mib(reference_kib)}",
            f"{peak / reference_kib:.1f}×",
            "none set",
            None,
            command,
        ),
    ]
    return figures, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 starts instead of 5")
    parser.add_argument("--command", default="scripts/bench/startup.py")
    parser.add_argument("--no-record", action="store_true")
    args, _ = parser.parse_known_args()
    repeats, rest_seconds = (2, 2.0) if args.quick else (5, 5.0)
    reference_kib = benchlib.bare_fastapi_rss_kib()
    starts = []
    for index in range(repeats):
        with tempfile.TemporaryDirectory(prefix=f"bench-allinone-{index}-") as tmp:
            starts.append(cold_start(Path(tmp), rest_seconds))
    figures, lines = report(starts, reference_kib, args.command)
    for line in lines:
        print(line)
    if not args.no_record:
        setting = (
            "`tradebot-allinone` with a new data directory each start, free loopback ports, the KIS simulator"
            " (synthetic market); timed from launching the process."
        )
        benchlib.write_section(SECTION, args.command, lines, setting)
        benchlib.update_summary(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
