"""``scripts/run_cluster.sh`` (``python -m common.cluster``): every process up, then all gone on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from common.cluster import Cluster, ClusterConfig, ClusterError


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cluster_runner_starts_every_process_and_leaves_none_behind_on_ctrl_c(
    pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    exchange = f"test-cluster-{uuid.uuid4().hex[:8]}"
    runner = subprocess.Popen(
        [sys.executable, "-m", "common.cluster", "--free-ports", "--no-create-database", "--database-url", pg_url,
         "--amqp-url", amqp_url, "--exchange", exchange, "--work-dir", str(tmp_path), "--traders", "2",
         "--ready-timeout", "120"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        assert runner.stderr is not None
        while not any("stop with Ctrl-C" in line for line in output):
            line = runner.stderr.readline()
            assert line, "".join(output)[-3000:]  # the runner gave up (not ready in time) and exited
            output.append(line)
        summary = "".join(output)
        gateway = re.search(r"API gateway:\s+(\S+)/", summary)
        assert gateway is not None, summary
        health = httpx.get(f"{gateway.group(1)}/api/v1/system/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ready", health.text
        assert "trader-2:" in summary
        traders = [
            httpx.get(f"{url}/trade/instance", timeout=10).json()["active"]
            for url in re.findall(r"trader(?:-2)?:\s+(\S+)", summary)
        ]
        assert sorted(traders) == [False, True]  # one holds the account lease, the other waits
        members = children(runner.pid)
        assert len(members) == 9  # the simulator, the seven services and the second trader
        runner.send_signal(signal.SIGINT)
        _, rest = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, rest
    assert "cluster: stopped" in rest
    assert not [pid for pid in members if alive(pid)]


def test_a_service_that_cannot_start_is_named_with_its_log(tmp_path: Path) -> None:
    config = ClusterConfig(
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none",
        amqp_url="amqp://guest:guest@127.0.0.1:1/",
        work_dir=tmp_path,
        free_ports=True,
    )
    cluster = Cluster(config)
    try:
        cluster.start_member("trader")
        with pytest.raises(ClusterError, match=r"trader exited with \d+; log: .*trader\.log"):
            cluster.wait_ready(["trader"], timeout=60)
    finally:
        cluster.stop()
    assert all(member.process is None for member in cluster.members.values())
