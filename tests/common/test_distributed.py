"""Distributed mode: a service is its own process, configured only by environment variables."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_service_process_runs_on_postgresql_and_rabbitmq_and_stops_on_sigterm(pg_url: str, amqp_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TRADEBOT_DATABASE_URL": pg_url,
        "TRADEBOT_AMQP_URL": amqp_url,
        "TRADEBOT_BUS_EXCHANGE": f"test-distributed-{port}",
        "TRADER_PORT": str(port),
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "tradebot-trader")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0][-3000:]
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "trader did not become ready in 60 s"
            time.sleep(0.25)
        assert ready.json()["checks"] == {"database": "ok", "bus": "ok", "lease": "ok"}
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert '"event": "service.listening"' in stdout


def test_service_refuses_to_start_without_a_broker_in_distributed_mode() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env["TRADER_PORT"] = str(free_port())
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tradebot-trader")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "TRADEBOT_AMQP_URL is required" in result.stdout + result.stderr
