"""All-in-one: one process serves the gateway on one port and the dashboard on another."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from common.allinone import AllInOne, AllInOneSettings, discover_services
from common.kis.sim import dev_account
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_allinone_mounts_every_service_and_the_dashboard_shows_them(tmp_path: Path) -> None:
    settings = AllInOneSettings(gateway_port=free_port(), web_port=free_port(), data_dir=tmp_path)
    runtime_settings = RuntimeSettings(
        mode=Mode.ALLINONE,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",  # type: ignore[arg-type]
    )
    async with Runtime.from_settings(runtime_settings) as runtime:
        platform = AllInOne(runtime, settings, discover_services())
        ready = asyncio.Event()
        serving = asyncio.create_task(platform.serve(on_ready=ready.set))
        await asyncio.wait_for(ready.wait(), 30)
        gateway = f"http://127.0.0.1:{settings.gateway_port}"
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{gateway}/healthz")).json()["service"] == "api-gateway"
            internal = runtime.extras["internal_headers"]
            trader = await client.get(f"{gateway}/services/trader/readyz", headers=internal)
            assert trader.status_code == 200
            # Around the gateway, a mounted service refuses anyone without the process's token.
            bypass = await client.post(f"{gateway}/services/trader/trade/buy", json={})
            assert bypass.status_code == 403
            health = (await client.get(f"{gateway}/api/v1/system/health")).json()
            page = await client.get(f"http://127.0.0.1:{settings.web_port}/")
        platform.stop()
        await asyncio.wait_for(serving, 30)
    assert health["status"] == "ready"
    assert set(health["services"]) == {"data-collector", "data-processor", "model-trainer", "inferencer", "trader"}
    assert page.status_code == 200
    assert "System status" in page.text and 'data-service="trader"' in page.text


def test_allinone_console_script_starts_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    gateway_port, web_port = free_port(), free_port()
    sim_ports = {name: free_port() for name in ("REAL_REST", "REAL_WS", "PAPER_REST", "PAPER_WS")}
    env = {
        **os.environ,
        **{f"KIS_SIM_{name}_PORT": str(port) for name, port in sim_ports.items()},
        "TRADEBOT_ALLINONE_GATEWAY_PORT": str(gateway_port),
        "TRADEBOT_ALLINONE_WEB_PORT": str(web_port),
        "TRADEBOT_ALLINONE_DATA_DIR": str(tmp_path),
        "TRADEBOT_LOG_JSON": "true",
    }
    env.pop("TRADEBOT_DATABASE_URL", None)
    script = Path(sys.executable).parent / "tradebot-allinone"
    process = subprocess.Popen(
        [str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1][-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{web_port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "all-in-one did not come up in 60 s"
            time.sleep(0.25)
        assert httpx.get(f"http://127.0.0.1:{gateway_port}/healthz", timeout=5).status_code == 200
        # The KIS simulator runs alongside and speaks the protocol. Services hold the paper
        # account's token (a second one within a minute is throttled, as on KIS); ask with the
        # real-domain dev account, which no service uses.
        account = dev_account("real")
        token = httpx.post(
            f"http://127.0.0.1:{sim_ports['REAL_REST']}/oauth2/tokenP",
            json={"grant_type": "client_credentials", "appkey": account.appkey,
                  "appsecret": account.appsecret.get_secret_value()},
            timeout=5,
        )
        assert token.status_code == 200, token.text
        assert token.json()["expires_in"] == 86400
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    assert f"dashboard:     http://127.0.0.1:{web_port}/" in stderr
    assert f"KIS simulator: http://127.0.0.1:{sim_ports['PAPER_REST']} (paper)" in stderr
    assert "stopped cleanly" in stderr
    assert (tmp_path / "tradebot.db").exists()
